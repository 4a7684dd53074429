/* edgeflow measurement firmware: vector table and reset handler for a bare-metal Cortex-M.
 * Copies .data, zeroes .bss, enables the FPU (and MVE) where there is one, starts newlib's
 * semihosting (rdimon) console and calls main(); a fault prints "EF fault" and stops QEMU. */
#include <stdint.h>

extern uint32_t __stack_top, __data_load, __data_start, __data_end, __bss_start__, __bss_end__;
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
extern int main(int argc, char **argv);
extern void exit(int status);

/* The C++ runtime keys static destructors by this handle (crtbegin defines it; no start files here). */
void *__dso_handle = 0;
/* newlib's __libc_init_array/__libc_fini_array call these (crti.o has them; no start files here). */
void _init(void) {}
void _fini(void) {}

static void semihost(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
}

void Fault_Handler(void) {
  semihost(0x04, "EF fault\n");           /* SYS_WRITE0 */
  semihost(0x18, (const void *)0x20023);  /* SYS_EXIT, ADP_Stopped_RunTimeErrorUnknown */
  for (;;) {
  }
}

void Reset_Handler(void) {
#ifdef EF_HAS_FPU
  *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20; /* CPACR: CP10, CP11 full access */
  __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
  uint32_t *src = &__data_load, *dst = &__data_start;
  while (dst < &__data_end) *dst++ = *src++;
  for (dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
  initialise_monitor_handles();
  __libc_init_array();
  exit(main(0, 0));
}

__attribute__((section(".isr_vector"), used)) const void *const ef_vectors[16] = {
    &__stack_top, (const void *)Reset_Handler, (const void *)Fault_Handler, (const void *)Fault_Handler,
    (const void *)Fault_Handler, (const void *)Fault_Handler, (const void *)Fault_Handler, 0, 0, 0, 0,
    (const void *)Fault_Handler, (const void *)Fault_Handler, 0, (const void *)Fault_Handler,
    (const void *)Fault_Handler,
};
