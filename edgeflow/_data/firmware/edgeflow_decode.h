// edgeflow's DECODE kernel: TFLM's custom operator TFLM_DECODE for lookup-table (LUT)
// compressed constant tensors only (edgeflow.tflite.lut), without the Huffman and prune
// decoders and the per-type instantiations of TFLM's own kernel (Register_DECODE), so it
// costs less flash. Register it in place of AddDecode():
//
//   resolver.AddCustom("TFLM_DECODE", edgeflow_decode::Register());
#ifndef EDGEFLOW_DECODE_H_
#define EDGEFLOW_DECODE_H_

#include "tensorflow/lite/micro/micro_common.h"

namespace edgeflow_decode {

// The registration (Prepare and Eval); the resolver copies it.
const TFLMRegistration* Register();

}  // namespace edgeflow_decode

#endif  // EDGEFLOW_DECODE_H_
