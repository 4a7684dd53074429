/* edgeflow: a QEMU TCG plugin that counts executed guest instructions and writes the count
 * each time execution reaches one of up to 8 marker addresses.
 *
 * Arguments: out=PATH (the log), mark=ADDR (hex, repeatable; the marker's index is its
 * position). Log lines: "<marker index> <instructions executed so far>". A translation
 * block's instructions are added when it starts executing; marker blocks are not counted.
 *
 * The declarations below are the QEMU plugin API (include/qemu/qemu-plugin.h, API version
 * 1, QEMU 6.0 to 8.x) that this file uses, written out because Debian ships no header. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*udata_cb)(unsigned int vcpu_index, void *userdata);
typedef void (*atexit_cb)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, udata_cb cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, atexit_cb cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t executed;
static uint64_t marks[8];
static int n_marks;
static FILE *out;

static void on_mark(unsigned int vcpu_index, void *userdata) {
  (void)vcpu_index;
  fprintf(out, "%d %llu\n", (int)(intptr_t)userdata, (unsigned long long)executed);
  fflush(out);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  uint64_t pc = qemu_plugin_tb_vaddr(tb);
  for (int i = 0; i < n_marks; ++i) {
    if (pc == marks[i]) {
      qemu_plugin_register_vcpu_tb_exec_cb(tb, on_mark, QEMU_PLUGIN_CB_NO_REGS, (void *)(intptr_t)i);
      return;
    }
  }
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                           qemu_plugin_tb_n_insns(tb));
}

static void on_quit(qemu_plugin_id_t id, void *userdata) {
  (void)id;
  (void)userdata;
  fprintf(out, "-1 %llu\n", (unsigned long long)executed);
  fclose(out);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                               int argc, char **argv) {
  (void)info;
  const char *path = NULL;
  for (int i = 0; i < argc; ++i) {
    if (strncmp(argv[i], "out=", 4) == 0) path = argv[i] + 4;
    else if (strncmp(argv[i], "mark=", 5) == 0 && n_marks < 8) marks[n_marks++] = strtoull(argv[i] + 5, NULL, 16) & ~1ull;
  }
  if (path == NULL || (out = fopen(path, "w")) == NULL) return -1;
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, on_quit, NULL);
  return 0;
}
