// edgeflow's DECODE kernel for LUT-compressed tensors (see edgeflow_decode.h).
//
// Semantics are those of TFLM's DECODE (tensorflow/lite/micro/kernels/decode.cc and
// decode_state_lut.cc at the revision edgeflow pins), written anew:
// * inputs come in pairs (encoded tensor, ancillary tensor), one output per pair; both
//   inputs must be constant;
// * the ancillary tensor starts with 16 bytes of Decode Common Metadata (DCM): byte 0 the
//   decode type (0 = LUT; 1 Huffman, 2 prune and 127 custom are not decoded here), byte 1
//   the DCM version (1), byte 4 the LUT version (1), byte 5 bits 2-0 the bits per index
//   (1-7), byte 6 the value table's channel stride in elements; the value tables follow;
// * the encoded tensor is the indices, bit-packed most significant bit first;
// * the number of tables is the output's number of quantization scales; the channel
//   axis is the first, or the last when it is the quantized dimension and there are
//   several scales (any other quantized dimension is an error); element i of channel c
//   is table[c * stride + index_i];
// * the output lives where the memory planner puts it (in the arena), unless alternate
//   decompression memory was given to the interpreter (MicroContext::SetDecompressionMemory).
// Output types: bool, int8, int16, int32, int64, float32 (TFLM's list), decoded by one loop
// per element size (1, 2, 4, 8 bytes); unsupported types, decode types and versions fail in
// Prepare with one MicroPrintf line (TFLM checks the output type only in Eval).
// int8/bool runs with 2- and 4-bit indices (what 4 and 16 clusters give) decode whole packed
// bytes at once; other widths, sizes and the channels-last axis one index at a time.
// Cost (Cortex-M4, arm-none-eabi-gcc 12 -O2): 2,329 bytes of flash (2,061 without the byte
// path), where TFLM's DECODE links about 20 KB; per decoded int8 element about 5 instructions
// with 4-bit and 4 with 2-bit indices (12 one index at a time), where TFLM's unrolled int8
// paths take about 3.5 (digits CNN, bench/bench_size.py --only clustering --firmware).
#include "edgeflow_decode.h"

#include <cstdint>
#include <cstring>

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_arena_constants.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace edgeflow_decode {
namespace {

struct Table {
  const uint8_t* indices;  // bit-packed, MSB first
  const uint8_t* values;   // the value tables (after the 16 DCM bytes)
  uint32_t count;          // elements of the output
  uint32_t channels;       // tables
  uint32_t run;            // elements per channel in a row (1 along the last axis)
  uint32_t stride;         // table stride in elements
  uint8_t bits;            // bits per index, 1-7
  uint8_t size;            // bytes per element: 1, 2, 4 or 8
  bool last_axis;          // channels interleave (the channel axis is the last)
};

uint8_t ElementBytes(TfLiteType type) {
  switch (type) {
    case kTfLiteBool:
    case kTfLiteInt8:
      return 1;
    case kTfLiteInt16:
      return 2;
    case kTfLiteInt32:
    case kTfLiteFloat32:
      return 4;
    case kTfLiteInt64:
      return 8;
    default:
      return 0;
  }
}

const char* TypeName(uint8_t type) {
  switch (type) {
    case 1:
      return "Huffman";
    case 2:
      return "prune";
    case 127:
      return "custom";
    default:
      return "unknown";
  }
}

// One (encoded, ancillary) -> output pair; the MicroPrintf line says what is unsupported.
TfLiteStatus Setup(TfLiteContext* context, TfLiteNode* node, int pair, const TfLiteTensor& encoded,
                   const TfLiteTensor& ancillary, TfLiteTensor& output, Table& t) {
  if (encoded.allocation_type != kTfLiteMmapRo || ancillary.allocation_type != kTfLiteMmapRo) {
    MicroPrintf("DECODE inputs %d and %d are not both constant", 2 * pair, 2 * pair + 1);
    return kTfLiteError;
  }
  const uint8_t* dcm = ancillary.data.uint8;
  if (ancillary.bytes < 16) {
    MicroPrintf("DECODE metadata of %u bytes (< 16)", static_cast<unsigned>(ancillary.bytes));
    return kTfLiteError;
  }
  if (dcm[1] != 1) {
    MicroPrintf("unsupported DECODE metadata version %u (not 1)", dcm[1]);
    return kTfLiteError;
  }
  if (dcm[0] != 0) {
    MicroPrintf("unsupported DECODE type %u (%s): edgeflow's DECODE kernel decodes lookup tables (type 0) only",
                dcm[0], TypeName(dcm[0]));
    return kTfLiteError;
  }
  if (dcm[4] != 1) {
    MicroPrintf("unsupported DECODE table version %u (not 1)", dcm[4]);
    return kTfLiteError;
  }
  t.size = ElementBytes(output.type);
  if (t.size == 0) {
    MicroPrintf("unsupported DECODE output type %s", TfLiteTypeGetName(output.type));
    return kTfLiteError;
  }
  t.bits = dcm[5] & 0x07;
  if (t.bits == 0) {
    MicroPrintf("unsupported DECODE index width 0 (1-7 bits)");
    return kTfLiteError;
  }
  t.channels = 1;
  t.last_axis = false;
  if (output.quantization.type == kTfLiteAffineQuantization && output.quantization.params != nullptr) {
    const auto* q = static_cast<const TfLiteAffineQuantization*>(output.quantization.params);
    t.channels = q->scale->size;
    if (q->quantized_dimension == output.dims->size - 1 && t.channels > 1) {
      t.last_axis = true;
    } else if (q->quantized_dimension != 0) {
      MicroPrintf("unsupported DECODE quantization axis %d (0 or the last)", q->quantized_dimension);
      return kTfLiteError;
    }
  }
  int count = 1;
  for (int d = 0; d < output.dims->size; ++d) count *= output.dims->data[d];
  t.count = count;
  t.run = t.last_axis ? 1 : t.count / t.channels;
  t.stride = dcm[6];
  t.indices = encoded.data.uint8;
  t.values = dcm + 16;
  if (output.data.data == nullptr) {  // alternate decompression memory keeps it out of the arena plan
    void* memory = tflite::GetMicroContext(context)->AllocateDecompressionMemory(
        output.bytes, tflite::MicroArenaBufferAlignment());
    if (memory != nullptr) {
      tflite::micro::GetEvalOutput(context, node, pair)->data.data = memory;
      output.data.data = memory;
    }
  }
  return kTfLiteOk;
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  const int outputs = node->outputs->size;
  if (outputs < 1 || node->inputs->size != 2 * outputs) {
    MicroPrintf("DECODE needs two inputs per output (%d inputs, %d outputs)", node->inputs->size, outputs);
    return kTfLiteError;
  }
  tflite::MicroContext* micro = tflite::GetMicroContext(context);
  auto* tables = static_cast<Table*>(micro->AllocatePersistentBuffer(outputs * sizeof(Table)));
  if (tables == nullptr) return kTfLiteError;
  node->user_data = tables;
  micro->ResetDecompressionMemoryAllocations();
  TfLiteStatus status = kTfLiteOk;
  for (int i = 0; i < outputs && status == kTfLiteOk; ++i) {
    TfLiteTensor* encoded = micro->AllocateTempInputTensor(node, 2 * i);
    TfLiteTensor* ancillary = micro->AllocateTempInputTensor(node, 2 * i + 1);
    TfLiteTensor* output = micro->AllocateTempOutputTensor(node, i);
    status = encoded && ancillary && output ? Setup(context, node, i, *encoded, *ancillary, *output, tables[i])
                                            : kTfLiteError;
    if (encoded) micro->DeallocateTempTfLiteTensor(encoded);
    if (ancillary) micro->DeallocateTempTfLiteTensor(ancillary);
    if (output) micro->DeallocateTempTfLiteTensor(output);
  }
  return status;
}

// Whole packed bytes of 1-byte elements with W-bit indices (W = 2 or 4: 8 / W indices a
// byte, none straddling two): n / (8 / W) bytes from `in`, each decoded with shifts fixed
// at compile time. Returns how many elements it wrote.
template <int W>
uint32_t DecodeBytes(const uint8_t* table, const uint8_t*& in, uint8_t* out, uint32_t n) {
  constexpr uint32_t kPer = 8 / W, kMask = (1u << W) - 1;
  const uint8_t* end = in + n / kPer;
  for (const uint8_t* p = in; p != end; ++p) {
    const uint32_t byte = *p;
#pragma GCC unroll 4
    for (int shift = 8 - W; shift >= 0; shift -= W) *out++ = table[byte >> shift & kMask];
  }
  n = static_cast<uint32_t>(end - in) * kPer;
  in = end;
  return n;
}

// Element i of a run of t.run elements reads the table of its channel: the whole channel
// (first axis), or one element per channel in turn (last axis). T: the element's bytes.
// Runs of int8/bool elements with 2- or 4-bit indices (edgeflow's 4 and 16 clusters)
// decode whole bytes at once (DecodeBytes) once the read position is on a byte boundary;
// the rest, and every other width or size, one index at a time.
template <typename T>
void DecodeAs(const Table& t, void* output) {
  T* out = static_cast<T*>(output);
  const uint8_t* in = t.indices;
  const uint32_t width = t.bits, mask = (1u << width) - 1;
  const bool bytes = sizeof(T) == 1 && (width == 2 || width == 4) && t.run >= 8 / width;
  uint32_t bits = 0, held = 0;  // bits read ahead from the packed indices, and how many
  uint32_t base = 0;            // the current table: channel * stride (elements)
  for (uint32_t group = t.last_axis ? t.count : t.channels; group > 0; --group) {
    const uint8_t* table = t.values + base * sizeof(T);
    uint32_t n = t.run;
    if (bytes) {
      for (; held > 0 && n > 0; --n) {  // the indices left in a byte read before: held % width == 0
        held -= width;
        memcpy(out++, table + (bits >> held & mask), 1);
      }
      uint8_t* o = reinterpret_cast<uint8_t*>(out);
      const uint32_t done = width == 4 ? DecodeBytes<4>(table, in, o, n) : DecodeBytes<2>(table, in, o, n);
      out += done;
      n -= done;
    }
    for (; n > 0; --n) {
      if (held < width) {  // width <= 7: one byte is always enough
        bits = bits << 8 | *in++;
        held += 8;
      }
      held -= width;
      memcpy(out++, table + (bits >> held & mask) * sizeof(T), sizeof(T));
    }
    base += t.stride;
    if (t.last_axis && base == t.channels * t.stride) base = 0;
  }
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const auto* tables = static_cast<const Table*>(node->user_data);
  for (int i = 0; i < node->outputs->size; ++i) {
    TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, i);
    const Table& t = tables[i];
    switch (t.size) {
      case 1:
        DecodeAs<uint8_t>(t, output->data.data);
        break;
      case 2:
        DecodeAs<uint16_t>(t, output->data.data);
        break;
      case 4:
        DecodeAs<uint32_t>(t, output->data.data);
        break;
      default:
        DecodeAs<uint64_t>(t, output->data.data);
    }
  }
  return kTfLiteOk;
}

}  // namespace

const TFLMRegistration* Register() {
  static const TFLMRegistration registration = tflite::micro::RegisterOp(nullptr, Prepare, Eval);
  return &registration;
}

}  // namespace edgeflow_decode
