// The context gate's core, fused: for every sentence b, head h and context row n,
//   out[b, h, p, n] = sum_r A[h, p, r] ReLU(LN(e[b, h R + r, n])),   e[b, c, n] = shift + sum_s M[s, n] x[b, c, s]
// (M: the pooling weights, shared by the batch, with the context encoding W_e folded in: d values per (s, n)). One
// (b, h) at a time, in blocks of channels: the pooling and both reductions are small matrix products over the block,
// LayerNorm and ReLU run row by row in between, so nothing of size B x C x N x d is ever held: the backward
// recomputes each block's rows. Reference: the PyTorch ops of cgc_fairseq/context_gate.py.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

namespace {

constexpr int64_t MAX_D = 64;           // d = K // 2 + 1: kernels up to K = 127
constexpr int64_t BLOCK_ELEMENTS = 8192;  // channels of a head taken together: block x N x d stays in cache

struct Sizes {
  int64_t B, C, T, N, D, H, P, R;
  int64_t block() const { return std::max<int64_t>(1, std::min<int64_t>(R, BLOCK_ELEMENTS / (N * D))); }
};

// In place over the R N rows of d values of one head: e (= pre + shift) -> E = ReLU(LN(e)); keeps xhat and rstd when
// asked (backward).
template <typename T, int64_t FD>
void normalise_rows(T* __restrict__ rows, int64_t count, int64_t D_, const T* __restrict__ shift,
                    const T* __restrict__ gamma, const T* __restrict__ beta, double eps, T* __restrict__ xhat_out,
                    T* __restrict__ rstd_out) {
  const int64_t D = FD ? FD : D_;
  for (int64_t i = 0; i < count; ++i) {
    T* e = rows + i * D;
    T xhat[FD ? FD : MAX_D];
    T mean = 0;
    for (int64_t k = 0; k < D; ++k) {
      xhat[k] = e[k] + shift[k];
      mean += xhat[k];
    }
    mean /= D;
    T var = 0;
    for (int64_t k = 0; k < D; ++k) {
      xhat[k] -= mean;
      var += xhat[k] * xhat[k];
    }
    const T rstd = T(1) / std::sqrt(var / D + T(eps));
    for (int64_t k = 0; k < D; ++k) {
      xhat[k] *= rstd;
      const T v = xhat[k] * gamma[k] + beta[k];
      e[k] = std::max(v, T(0));
    }
    if (xhat_out) {
      for (int64_t k = 0; k < D; ++k) xhat_out[i * D + k] = xhat[k];
      rstd_out[i] = rstd;
    }
  }
}

// In place over the rows: dE -> d e (through ReLU and LayerNorm), accumulating the gradients of shift, gamma, beta.
template <typename T, int64_t FD>
void normalise_rows_backward(T* __restrict__ grad, const T* __restrict__ E, const T* __restrict__ xhat,
                             const T* __restrict__ rstd, int64_t count, int64_t D_, const T* __restrict__ gamma,
                             T* __restrict__ gshift, T* __restrict__ ggamma, T* __restrict__ gbeta) {
  const int64_t D = FD ? FD : D_;
  T gs[FD ? FD : MAX_D] = {}, gg[FD ? FD : MAX_D] = {}, gb[FD ? FD : MAX_D] = {};  // kept in registers
  for (int64_t i = 0; i < count; ++i) {
    T* g = grad + i * D;
    const T* x = xhat + i * D;
    const T* y = E + i * D;
    T dxhat[FD ? FD : MAX_D];
    T m1 = 0, m2 = 0;
    for (int64_t k = 0; k < D; ++k) {
      const T dy = y[k] > 0 ? g[k] : T(0);  // ReLU
      gg[k] += dy * x[k];
      gb[k] += dy;
      dxhat[k] = dy * gamma[k];
      m1 += dxhat[k];
      m2 += dxhat[k] * x[k];
    }
    m1 /= D;
    m2 /= D;
    for (int64_t k = 0; k < D; ++k) {
      g[k] = rstd[i] * (dxhat[k] - m1 - x[k] * m2);  // d e
      gs[k] += g[k];
    }
  }
  for (int64_t k = 0; k < D; ++k) {
    gshift[k] += gs[k];
    ggamma[k] += gg[k];
    gbeta[k] += gb[k];
  }
}

// Calls f with the row functions instantiated for a compile-time d where that is faster (measured: d = 2, 4, 8, i.e.
// K = 3, 7, 15; for d = 16 the runtime loop is 2x faster than the unrolled one), else 0 (runtime d).
template <typename F>
void with_width(int64_t D, F f) {
  switch (D) {
    case 2: f(std::integral_constant<int64_t, 2>()); break;
    case 4: f(std::integral_constant<int64_t, 4>()); break;
    case 8: f(std::integral_constant<int64_t, 8>()); break;
    default: f(std::integral_constant<int64_t, 0>());
  }
}

Sizes sizes(const torch::Tensor& x, const torch::Tensor& M, const torch::Tensor& reduce) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 3 && x.is_contiguous(), "x: a contiguous CPU tensor B x C x T");
  TORCH_CHECK(M.dim() == 3 && M.is_contiguous() && M.size(0) == x.size(2), "M: contiguous T x N x d");
  TORCH_CHECK(reduce.dim() == 3 && x.size(1) == reduce.size(0) * reduce.size(2), "reduce: H x P x R with C = H R");
  TORCH_CHECK(M.size(2) <= MAX_D, "d <= 64");
  return Sizes{x.size(0), x.size(1), x.size(2), M.size(1), M.size(2), reduce.size(0), reduce.size(1), reduce.size(2)};
}

}  // namespace

torch::Tensor forward(torch::Tensor x, torch::Tensor M, torch::Tensor shift, torch::Tensor gamma, torch::Tensor beta,
                      torch::Tensor reduce, double eps) {
  const Sizes z = sizes(x, M, reduce);
  shift = shift.contiguous(), gamma = gamma.contiguous(), beta = beta.contiguous(), reduce = reduce.contiguous();
  auto out = torch::empty({z.B, z.H, z.P, z.N * z.D}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gate_core_forward", [&] {
    with_width(z.D, [&](auto width) {
      at::parallel_for(0, z.B * z.H, 1, [&](int64_t begin, int64_t end) {
        for (int64_t bh = begin; bh < end; ++bh) {
          const int64_t b = bh / z.H, h = bh % z.H;
          auto Mb = M.view({z.T, -1});
          auto o = out[b][h];  // P x N d
          o.zero_();
          for (int64_t r = 0; r < z.R; r += z.block()) {
            const int64_t rb = std::min(z.block(), z.R - r);
            auto E = at::mm(x[b].narrow(0, h * z.R + r, rb), Mb);  // rb x N d: pooled and encoded, before shift
            normalise_rows<scalar_t, decltype(width)::value>(
                E.data_ptr<scalar_t>(), rb * z.N, z.D, shift.data_ptr<scalar_t>(), gamma.data_ptr<scalar_t>(),
                beta.data_ptr<scalar_t>(), eps, nullptr, nullptr);
            o.addmm_(reduce[h].narrow(1, r, rb), E);
          }
        }
      });
    });
  });
  return out.view({z.B, z.H, z.P, z.N, z.D});
}

// -> gradients of x, M, shift, gamma, beta, reduce
std::vector<torch::Tensor> backward(torch::Tensor grad_out, torch::Tensor x, torch::Tensor M, torch::Tensor shift,
                                    torch::Tensor gamma, torch::Tensor beta, torch::Tensor reduce, double eps) {
  const Sizes z = sizes(x, M, reduce);
  grad_out = grad_out.contiguous().view({z.B, z.H, z.P, z.N * z.D});
  shift = shift.contiguous(), gamma = gamma.contiguous(), beta = beta.contiguous(), reduce = reduce.contiguous();
  auto gx = torch::empty_like(x);
  // partial sums: M's per thread, the rest per sentence and head
  auto gM = torch::zeros({at::get_num_threads(), z.T, z.N * z.D}, x.options());
  auto gshift = torch::zeros({z.B * z.H, z.D}, x.options());
  auto ggamma = torch::zeros({z.B * z.H, z.D}, x.options());
  auto gbeta = torch::zeros({z.B * z.H, z.D}, x.options());
  auto gA = torch::empty({z.B, z.H, z.P, z.R}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gate_core_backward", [&] {
    with_width(z.D, [&](auto width) {
      at::parallel_for(0, z.B * z.H, 1, [&](int64_t begin, int64_t end) {
        auto xhat = torch::empty({z.block(), z.N * z.D}, x.options());
        auto rstd = torch::empty({z.block() * z.N}, x.options());
        for (int64_t bh = begin; bh < end; ++bh) {
          const int64_t b = bh / z.H, h = bh % z.H;
          auto Mb = M.view({z.T, -1});
          auto g = grad_out[b][h];  // P x N d
          auto gMs = gM[at::get_thread_num()];
          for (int64_t r = 0; r < z.R; r += z.block()) {
            const int64_t rb = std::min(z.block(), z.R - r);
            auto xs = x[b].narrow(0, h * z.R + r, rb);
            auto E = at::mm(xs, Mb);  // recomputed
            normalise_rows<scalar_t, decltype(width)::value>(
                E.data_ptr<scalar_t>(), rb * z.N, z.D, shift.data_ptr<scalar_t>(), gamma.data_ptr<scalar_t>(),
                beta.data_ptr<scalar_t>(), eps, xhat.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>());
            auto ga = gA[b][h].narrow(1, r, rb);
            at::mm_out(ga, g, E.t());                                  // P x rb
            auto ge = at::mm(reduce[h].narrow(1, r, rb).t(), g);       // rb x N d: d E, then d e in place
            normalise_rows_backward<scalar_t, decltype(width)::value>(
                ge.data_ptr<scalar_t>(), E.data_ptr<scalar_t>(), xhat.data_ptr<scalar_t>(),
                rstd.data_ptr<scalar_t>(), rb * z.N, z.D, gamma.data_ptr<scalar_t>(), gshift[bh].data_ptr<scalar_t>(),
                ggamma[bh].data_ptr<scalar_t>(), gbeta[bh].data_ptr<scalar_t>());
            gMs.addmm_(xs.t(), ge);  // T x N d
            auto gxs = gx[b].narrow(0, h * z.R + r, rb);
            at::mm_out(gxs, ge, Mb.t());  // rb x T
          }
        }
      });
    });
  });
  return {gx, gM.sum(0).view(M.sizes()), gshift.sum(0), ggamma.sum(0), gbeta.sum(0), gA.sum(0)};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused context-gate core (pooling, context encoding, head reductions), forward");
  m.def("backward", &backward, "fused context-gate core, backward");
}
