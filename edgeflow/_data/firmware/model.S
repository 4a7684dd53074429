/* edgeflow: the .tflite file as a 16-byte aligned array in read-only data. */
  .section .rodata.g_model, "a"
  .balign 16
  .global g_model
  .type g_model, %object
g_model:
  .incbin EF_MODEL_PATH
  .size g_model, . - g_model
