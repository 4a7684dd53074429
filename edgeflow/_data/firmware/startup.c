/* edgeflow measurement firmware: vector table and reset handler for a bare-metal Cortex-M.
 * Copies .data, zeroes .bss, enables the FPU (and MVE) where there is one, starts newlib's
 * semihosting (rdimon) console and calls main().
 *
 * Nothing may spin: a fault prints "EF fault <exception> pc=... lr=... cfsr=... hfsr=...
 * mmfar=... bfar=..." (the stacked PC and LR of the faulting code, and the fault status
 * registers of ARMv7-M/ARMv8-M Mainline; 0 on ARMv6-M/ARMv8-M Baseline, which have none)
 * and abort() (newlib's assert() calls it) prints "EF abort abort()"; both then stop QEMU
 * with semihosting SYS_EXIT_EXTENDED and the exit status EF_EXIT_FAULT / EF_EXIT_ABORT.
 * TFLM's own abort (AbortImpl, a loop) is caught in main.cc's DebugLog. */
#include <stdint.h>

#define EF_EXIT_ABORT 7
#define EF_EXIT_FAULT 8

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

static int semihost(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

/* SYS_EXIT_EXTENDED (0x20) with ADP_Stopped_ApplicationExit: QEMU exits with `status`. */
__attribute__((noreturn)) static void ef_stop(int status) {
  const uint32_t block[2] = {0x20026u, (uint32_t)status};
  semihost(0x20, block);
  for (;;) {
  }
}

static char *ef_hex(char *out, const char *name, uint32_t value) {
  while (*name) *out++ = *name++;
  *out++ = '0';
  *out++ = 'x';
  for (int shift = 28; shift >= 0; shift -= 4) *out++ = "0123456789abcdef"[(value >> shift) & 0xF];
  return out;
}

/* Called by Fault_Handler with the stack frame the core pushed on exception entry. */
__attribute__((used, noreturn)) void ef_fault_report(const uint32_t *frame) {
  static const char *const names[16] = {"exception", "exception", "NMI", "HardFault", "MemManage", "BusFault",
                                        "UsageFault", "SecureFault", "exception", "exception", "exception",
                                        "SVCall", "DebugMonitor", "exception", "PendSV", "SysTick"};
  uint32_t ipsr;
  __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
  uint32_t cfsr = 0, hfsr = 0, mmfar = 0, bfar = 0;
#if !defined(__ARM_ARCH_6M__) && !defined(__ARM_ARCH_8M_BASE__)
  cfsr = *(volatile uint32_t *)0xE000ED28;
  hfsr = *(volatile uint32_t *)0xE000ED2C;
  mmfar = *(volatile uint32_t *)0xE000ED34;
  bfar = *(volatile uint32_t *)0xE000ED38;
#endif
  char line[160], *p = line;
  const char *prefix = "EF fault ";
  while (*prefix) *p++ = *prefix++;
  const char *name = (ipsr & 0x1FF) < 16 ? names[ipsr & 0x1FF] : "interrupt";
  while (*name) *p++ = *name++;
  p = ef_hex(p, " pc=", frame[6]);
  p = ef_hex(p, " lr=", frame[5]);
  p = ef_hex(p, " cfsr=", cfsr);
  p = ef_hex(p, " hfsr=", hfsr);
  p = ef_hex(p, " mmfar=", mmfar);
  p = ef_hex(p, " bfar=", bfar);
  *p++ = '\n';
  *p = 0;
  semihost(0x04, line); /* SYS_WRITE0 */
  ef_stop(EF_EXIT_FAULT);
}

/* The stacked frame is on the main or the process stack (bit 2 of EXC_RETURN); ARMv6-M code. */
__attribute__((naked)) void Fault_Handler(void) {
  __asm__ volatile(
      "movs r0, #4\n\t"
      "mov r1, lr\n\t"
      "tst r0, r1\n\t"
      "beq 1f\n\t"
      "mrs r0, psp\n\t"
      "b 2f\n"
      "1:\n\t"
      "mrs r0, msp\n"
      "2:\n\t"
      "ldr r2, =ef_fault_report\n\t"
      "bx r2\n\t"
      ".ltorg");
}

/* newlib's abort() would raise SIGABRT; this one says so and stops QEMU. */
__attribute__((noreturn)) void abort(void) {
  semihost(0x04, "EF abort abort()\n");
  ef_stop(EF_EXIT_ABORT);
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
