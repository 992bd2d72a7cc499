// oneDNN's convolutions as XLA FFI handlers: forward, input gradient (dX) and
// weight gradient (dW) of a 2-D float32 convolution, NHWC activations and HWIO
// weights (JAX's and Flax's layout), any stride and zero padding, in feature
// groups (depthwise: one group per channel) or not.
//
// Why the weights' memory format is left to oneDNN (memory::format_tag::any)
// and reordered from and to HWIO on each call: fixed to HWIO, oneDNN falls
// back to its im2col + GEMM kernels; free, it picks the blocked layouts of its
// direct (brgconv/jit) kernels, the ones PyTorch runs for channels_last.
//
// One call at a time per process (CallLock): XLA may run independent custom
// calls concurrently (a layer's dX next to its dW), and each call already
// spreads over every core with OpenMP, so two at once would put twice as many
// threads on the cores.
//
// Primitives are created on each call: oneDNN's own primitive cache (bounded:
// DNNL_PRIMITIVE_CACHE_CAPACITY, 1024 by default) returns a compiled kernel
// for a shape it has seen, so only the primitive descriptor is rebuilt.

#include <cstdint>
#include <mutex>
#include <string>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

std::mutex& CallLock() {
  static std::mutex lock;
  return lock;
}

// The convolution's geometry, read from the operands' shapes and the attributes.
struct Geometry {
  memory::dims src, weights, dst, strides, padding_l, padding_r;
  // The filters as JAX holds them: HWIO, the output channels of one group
  // next to each other (output channel = group * O/G + o).
  memory::dims hwio_strides;
};

Geometry MakeGeometry(ffi::Span<const int64_t> x, ffi::Span<const int64_t> w,
                      ffi::Span<const int64_t> y, int64_t stride_h,
                      int64_t stride_w, int64_t pad_top, int64_t pad_bottom,
                      int64_t pad_left, int64_t pad_right, int64_t groups) {
  // oneDNN's logical order is NCHW / (G)OIHW whatever the memory layout.
  const int64_t kh = w[0], kw = w[1], in = w[2], out = w[3];
  Geometry g{{x[0], x[3], x[1], x[2]},
             {out, in, kh, kw},
             {y[0], y[3], y[1], y[2]},
             {stride_h, stride_w},
             {pad_top, pad_left},
             {pad_bottom, pad_right},
             {1, out, kw * in * out, in * out}};
  if (groups > 1) {
    g.weights = {groups, out / groups, in, kh, kw};
    g.hwio_strides = {out / groups, 1, out, kw * in * out, in * out};
  }
  return g;
}

memory::desc UserWeights(const Geometry& g) {
  return memory::desc(g.weights, dt::f32, g.hwio_strides);
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training,
      dnnl::algorithm::convolution_direct, memory::desc(g.src, dt::f32, tag::nhwc),
      memory::desc(g.weights, dt::f32, tag::any),
      memory::desc(g.dst, dt::f32, tag::nhwc), g.strides, g.padding_l,
      g.padding_r);
}

// `user` in the layout the primitive wants: itself, or a reordered copy.
memory AsLayout(memory user, const memory::desc& wanted,
                dnnl::stream& stream) {
  if (user.get_desc() == wanted) return user;
  memory copy(wanted, Engine());
  dnnl::reorder(user, copy).execute(stream, user, copy);
  return copy;
}

ffi::Error Failure(const dnnl::error& e) {
  return ffi::Error(ffi::ErrorCode::kInternal,
                    std::string("oneDNN convolution failed: ") + e.what());
}

ffi::Error ForwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                       ffi::ResultBuffer<ffi::F32> y, int64_t stride_h,
                       int64_t stride_w, int64_t pad_top, int64_t pad_bottom,
                       int64_t pad_left, int64_t pad_right, int64_t groups) {
  std::lock_guard<std::mutex> serialized(CallLock());
  try {
    Geometry g = MakeGeometry(x.dimensions(), w.dimensions(), y->dimensions(),
                              stride_h, stride_w, pad_top, pad_bottom,
                              pad_left, pad_right, groups);
    auto pd = ForwardDesc(g);
    dnnl::stream stream(Engine());
    memory src(pd.src_desc(), Engine(), x.typed_data());
    memory user_weights(UserWeights(g), Engine(), w.typed_data());
    memory weights = AsLayout(user_weights, pd.weights_desc(), stream);
    memory dst(pd.dst_desc(), Engine(), y->typed_data());
    dnnl::convolution_forward(pd).execute(
        stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}});
    stream.wait();
  } catch (const dnnl::error& e) {
    return Failure(e);
  }
  return ffi::Error::Success();
}

ffi::Error InputGradImpl(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> w,
                         ffi::ResultBuffer<ffi::F32> dx, int64_t stride_h,
                         int64_t stride_w, int64_t pad_top, int64_t pad_bottom,
                         int64_t pad_left, int64_t pad_right, int64_t groups) {
  std::lock_guard<std::mutex> serialized(CallLock());
  try {
    Geometry g = MakeGeometry(dx->dimensions(), w.dimensions(), dy.dimensions(),
                              stride_h, stride_w, pad_top, pad_bottom,
                              pad_left, pad_right, groups);
    auto hint = ForwardDesc(g);
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct,
        memory::desc(g.src, dt::f32, tag::nhwc),
        memory::desc(g.weights, dt::f32, tag::any),
        memory::desc(g.dst, dt::f32, tag::nhwc), g.strides, g.padding_l,
        g.padding_r, hint);
    dnnl::stream stream(Engine());
    memory diff_dst(pd.diff_dst_desc(), Engine(), dy.typed_data());
    memory user_weights(UserWeights(g), Engine(), w.typed_data());
    memory weights = AsLayout(user_weights, pd.weights_desc(), stream);
    memory diff_src(pd.diff_src_desc(), Engine(), dx->typed_data());
    dnnl::convolution_backward_data(pd).execute(
        stream, {{DNNL_ARG_DIFF_DST, diff_dst},
                 {DNNL_ARG_WEIGHTS, weights},
                 {DNNL_ARG_DIFF_SRC, diff_src}});
    stream.wait();
  } catch (const dnnl::error& e) {
    return Failure(e);
  }
  return ffi::Error::Success();
}

ffi::Error WeightGradImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                          ffi::ResultBuffer<ffi::F32> dw, int64_t stride_h,
                          int64_t stride_w, int64_t pad_top, int64_t pad_bottom,
                          int64_t pad_left, int64_t pad_right, int64_t groups) {
  std::lock_guard<std::mutex> serialized(CallLock());
  try {
    Geometry g = MakeGeometry(x.dimensions(), dw->dimensions(), dy.dimensions(),
                              stride_h, stride_w, pad_top, pad_bottom,
                              pad_left, pad_right, groups);
    auto hint = ForwardDesc(g);
    dnnl::convolution_backward_weights::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct,
        memory::desc(g.src, dt::f32, tag::nhwc),
        memory::desc(g.weights, dt::f32, tag::any),
        memory::desc(g.dst, dt::f32, tag::nhwc), g.strides, g.padding_l,
        g.padding_r, hint);
    dnnl::stream stream(Engine());
    memory src(pd.src_desc(), Engine(), x.typed_data());
    memory diff_dst(pd.diff_dst_desc(), Engine(), dy.typed_data());
    memory user_diff_weights(UserWeights(g), Engine(), dw->typed_data());
    bool direct = pd.diff_weights_desc() == user_diff_weights.get_desc();
    memory diff_weights =
        direct ? user_diff_weights : memory(pd.diff_weights_desc(), Engine());
    dnnl::convolution_backward_weights(pd).execute(
        stream, {{DNNL_ARG_SRC, src},
                 {DNNL_ARG_DIFF_DST, diff_dst},
                 {DNNL_ARG_DIFF_WEIGHTS, diff_weights}});
    if (!direct) {
      dnnl::reorder(diff_weights, user_diff_weights)
          .execute(stream, diff_weights, user_diff_weights);
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    return Failure(e);
  }
  return ffi::Error::Success();
}

// The three handlers take the same attributes: the strides, the pads and the
// number of feature groups.
auto Bind() {
  return ffi::Ffi::Bind()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Ret<ffi::Buffer<ffi::F32>>()
      .Attr<int64_t>("stride_h")
      .Attr<int64_t>("stride_w")
      .Attr<int64_t>("pad_top")
      .Attr<int64_t>("pad_bottom")
      .Attr<int64_t>("pad_left")
      .Attr<int64_t>("pad_right")
      .Attr<int64_t>("groups");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnJaxOnednnConvForward, ForwardImpl, Bind());
XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnJaxOnednnConvInputGrad, InputGradImpl, Bind());
XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnJaxOnednnConvWeightGrad, WeightGradImpl, Bind());
