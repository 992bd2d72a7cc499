// One 64->64 3x3 convolution (batch 128, 32x32, stride 1, padding 1: a
// ResNet-20 stage-1 layer) through the oneDNN of pip's `onednn` wheel:
// forward, backward data (dX) and backward weights (dW), ms per pass.
// argv[1]: "nhwc" (the layouts JAX hands a custom call) or "any" (oneDNN
// picks its own, blocked layouts; reorders not timed).
#include <oneapi/dnnl/dnnl.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

using namespace dnnl;
using tag = memory::format_tag;

// A reference (unoptimized) implementation takes minutes per pass: not timed (-1).
static double ms_per_run(const std::function<void()>& run, stream& s, const char* impl) {
  if (std::strncmp(impl, "ref", 3) == 0) return -1;
  for (int i = 0; i < 2; ++i) run();
  s.wait();
  auto start = std::chrono::steady_clock::now();
  const int runs = 10;
  for (int i = 0; i < runs; ++i) run();
  s.wait();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
             .count() / runs;
}

int main(int argc, char** argv) {
  const bool any = argc > 1 && std::strcmp(argv[1], "any") == 0;
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  const memory::dim N = 128, C = 64, O = 64, H = 32, W = 32, K = 3;
  auto f32 = memory::data_type::f32;
  memory::desc x_md({N, C, H, W}, f32, any ? tag::any : tag::nhwc);
  memory::desc w_md({O, C, K, K}, f32, any ? tag::any : tag::hwio);
  memory::desc y_md({N, O, H, W}, f32, any ? tag::any : tag::nhwc);
  memory::dims stride{1, 1}, pad{1, 1};
  convolution_forward::primitive_desc fwd(eng, prop_kind::forward_training,
                                          algorithm::convolution_direct, x_md, w_md, y_md,
                                          stride, pad, pad);
  convolution_backward_data::primitive_desc bwd_data(eng, algorithm::convolution_direct,
                                                     fwd.src_desc(), fwd.weights_desc(),
                                                     fwd.dst_desc(), stride, pad, pad, fwd);
  convolution_backward_weights::primitive_desc bwd_weights(
      eng, algorithm::convolution_direct, fwd.src_desc(), fwd.weights_desc(), fwd.dst_desc(),
      stride, pad, pad, fwd);
  std::vector<float> x(N * C * H * W, 0.5f), w(O * C * K * K, 0.01f), y(N * O * H * W),
      dx(x.size()), dw(w.size()), g(y.size(), 0.1f);
  memory xm(fwd.src_desc(), eng, x.data()), wm(fwd.weights_desc(), eng, w.data()),
      ym(fwd.dst_desc(), eng, y.data()), gm(fwd.dst_desc(), eng, g.data()),
      dxm(bwd_data.diff_src_desc(), eng, dx.data()),
      dwm(bwd_weights.diff_weights_desc(), eng, dw.data());
  convolution_forward forward(fwd);
  convolution_backward_data backward_data(bwd_data);
  convolution_backward_weights backward_weights(bwd_weights);
  double f = ms_per_run([&] {
    forward.execute(s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}});
  }, s, fwd.impl_info_str());
  double d = ms_per_run([&] {
    backward_data.execute(s, {{DNNL_ARG_DIFF_DST, gm}, {DNNL_ARG_WEIGHTS, wm},
                              {DNNL_ARG_DIFF_SRC, dxm}});
  }, s, bwd_data.impl_info_str());
  double k = ms_per_run([&] {
    backward_weights.execute(s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, gm},
                                 {DNNL_ARG_DIFF_WEIGHTS, dwm}});
  }, s, bwd_weights.impl_info_str());
  std::printf("{\"layouts\": \"%s\", \"forward_ms\": %.1f, \"dx_ms\": %.1f, \"dw_ms\": %.1f, "
              "\"forward_impl\": \"%s\", \"dx_impl\": \"%s\", \"dw_impl\": \"%s\"}\n",
              any ? "any" : "nhwc", f, d, k, fwd.impl_info_str(), bwd_data.impl_info_str(),
              bwd_weights.impl_info_str());
  return 0;
}
