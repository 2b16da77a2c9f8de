// CPU linear-blend skinning of Gaussians (forward + backward), one fused loop per (pose, Gaussian).
// The math is skinning.py's `skin_gaussians` torch twin (which the tests compare against): the mean moved by the
// weight-blended 3x4 link motions, the rotation by the normalised weight-blend of the links' quaternions (each
// flipped into the hemisphere of the Gaussian's dominant link, the one of its largest weight: qtab[b, dominant, l])
// composed with the Gaussian's own unit quaternion. Gradients reach the link motions and the quaternion table (the
// weights, means and rotations are constants here: the fitting path; training differentiates them through the
// torch twin). Per-link gradients are reduced per thread.
#include "render_cpu.h"

#include <algorithm>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

struct Sizes {
    int64_t B, N, L;
};

// r = sum_l w_l qtab[b, dominant, l] for one (pose, Gaussian); returns |r| (unclamped).
template <typename scalar_t>
inline scalar_t blended_rotation(const scalar_t* w, const scalar_t* qrow, int64_t L, scalar_t* r) {
    r[0] = r[1] = r[2] = r[3] = 0;
    for (int64_t l = 0; l < L; ++l)
        for (int k = 0; k < 4; ++k) r[k] += w[l] * qrow[l * 4 + k];
    return std::sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2] + r[3] * r[3]);
}

// The link of a Gaussian's largest weight (the first of equals, as torch's argmax).
template <typename scalar_t>
inline int64_t main_link(const scalar_t* w, int64_t L) {
    int64_t best = 0;
    for (int64_t l = 1; l < L; ++l)
        if (w[l] > w[best]) best = l;
    return best;
}

// One Gaussian's constants: its weights, canonical mean, dominant link and unit canonical rotation.
template <typename scalar_t>
struct Canonical {
    const scalar_t* w;
    const scalar_t* x;
    int64_t dominant;
    scalar_t p[4];

    Canonical(const scalar_t* weights, const scalar_t* means, const scalar_t* quats, int64_t n, int64_t L)
        : w(weights + n * L), x(means + n * 3), dominant(main_link(w, L)) {
        const scalar_t* q = quats + n * 4;
        const scalar_t norm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
        for (int k = 0; k < 4; ++k) p[k] = q[k] / norm;
    }
};

template <typename scalar_t>
void forward_kernel(const scalar_t* weights, const scalar_t* affine, const scalar_t* qtab,
                    const scalar_t* means, const scalar_t* quats, const Sizes& z, scalar_t* out_means,
                    scalar_t* out_quats) {
    const int64_t B = z.B, N = z.N, L = z.L;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        const Canonical<scalar_t> c(weights, means, quats, n, L);
        const scalar_t *w = c.w, *x = c.x, *p = c.p;
        for (int64_t b = 0; b < B; ++b) {
            scalar_t A[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
            const scalar_t* T = affine + b * L * 12;
            for (int64_t l = 0; l < L; ++l)
                for (int k = 0; k < 12; ++k) A[k] += w[l] * T[l * 12 + k];
            scalar_t* m = out_means + (b * N + n) * 3;
            for (int i = 0; i < 3; ++i) m[i] = A[i * 4] * x[0] + A[i * 4 + 1] * x[1] + A[i * 4 + 2] * x[2] + A[i * 4 + 3];
            scalar_t r[4];
            const scalar_t* row = qtab + (b * L + c.dominant) * L * 4;
            const scalar_t norm = std::max(blended_rotation(w, row, L, r), scalar_t(1e-12));
            const scalar_t rw = r[0] / norm, rx = r[1] / norm, ry = r[2] / norm, rz = r[3] / norm;
            scalar_t* q = out_quats + (b * N + n) * 4;  // (r / |r|) * p, Hamilton product
            q[0] = rw * p[0] - rx * p[1] - ry * p[2] - rz * p[3];
            q[1] = rw * p[1] + rx * p[0] + ry * p[3] - rz * p[2];
            q[2] = rw * p[2] - rx * p[3] + ry * p[0] + rz * p[1];
            q[3] = rw * p[3] + rx * p[2] - ry * p[1] + rz * p[0];
        }
    }
}

template <typename scalar_t>
void backward_kernel(const scalar_t* weights, const scalar_t* qtab, const scalar_t* means,
                     const scalar_t* quats, const Sizes& z, const scalar_t* v_means, const scalar_t* v_quats,
                     scalar_t* v_affine, scalar_t* v_qtab) {
    const int64_t B = z.B, N = z.N, L = z.L;
    const int threads = at::get_num_threads();
    const size_t per_thread = size_t(B * L * 12 + B * L * L * 4);
    std::vector<double> partial(size_t(threads) * per_thread, 0.0);  // per thread: v_affine, then v_qtab
#pragma omp parallel
    {
#ifdef _OPENMP
        double* acc = &partial[size_t(omp_get_thread_num()) * per_thread];
#else
        double* acc = &partial[0];
#endif
        double* acc_q = acc + B * L * 12;
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; ++n) {
            const Canonical<scalar_t> c(weights, means, quats, n, L);
            const scalar_t *w = c.w, *x = c.x, *p = c.p;
            for (int64_t b = 0; b < B; ++b) {
                // mean = A[:, :3] x + A[:, 3] with A = sum_l w_l T_l: dT_l = w_l [g x^T | g]
                const scalar_t* g = v_means + (b * N + n) * 3;
                const scalar_t gA[12] = {g[0] * x[0], g[0] * x[1], g[0] * x[2], g[0],
                                         g[1] * x[0], g[1] * x[1], g[1] * x[2], g[1],
                                         g[2] * x[0], g[2] * x[1], g[2] * x[2], g[2]};
                double* a = acc + b * L * 12;
                for (int64_t l = 0; l < L; ++l)
                    for (int k = 0; k < 12; ++k) a[l * 12 + k] += double(w[l] * gA[k]);
                // quat = (r / max(|r|, 1e-12)) * p
                const int64_t row = (b * L + c.dominant) * L * 4;
                scalar_t r[4];
                const scalar_t length = blended_rotation(w, qtab + row, L, r);
                const scalar_t* v = v_quats + (b * N + n) * 4;
                const scalar_t gu[4] = {  // d/d(unit r) of the product
                    p[0] * v[0] + p[1] * v[1] + p[2] * v[2] + p[3] * v[3],
                    -p[1] * v[0] + p[0] * v[1] - p[3] * v[2] + p[2] * v[3],
                    -p[2] * v[0] + p[3] * v[1] + p[0] * v[2] - p[1] * v[3],
                    -p[3] * v[0] - p[2] * v[1] + p[1] * v[2] + p[0] * v[3],
                };
                scalar_t gr[4];
                if (length > scalar_t(1e-12)) {
                    scalar_t along = 0;
                    for (int k = 0; k < 4; ++k) along += gu[k] * r[k];
                    along /= length * length;
                    for (int k = 0; k < 4; ++k) gr[k] = (gu[k] - r[k] * along) / length;
                } else {
                    for (int k = 0; k < 4; ++k) gr[k] = gu[k] / scalar_t(1e-12);
                }
                double* aq = acc_q + row;
                for (int64_t l = 0; l < L; ++l)
                    for (int k = 0; k < 4; ++k) aq[l * 4 + k] += double(w[l] * gr[k]);
            }
        }
    }
    for (int th = 0; th < threads; ++th) {
        const double* a = &partial[size_t(th) * per_thread];
        for (int64_t i = 0; i < B * L * 12; ++i) v_affine[i] += scalar_t(a[i]);
        for (int64_t i = 0; i < B * L * L * 4; ++i) v_qtab[i] += scalar_t(a[B * L * 12 + i]);
    }
}

void check(const at::Tensor& weights, const at::Tensor& affine, const at::Tensor& qtab, const at::Tensor& means,
           const at::Tensor& quats) {
    for (const auto* t : {&weights, &affine, &qtab, &means, &quats})
        TORCH_CHECK(t->device().is_cpu() && t->is_contiguous(), "skin_cpu: CPU contiguous tensors expected");
    for (const auto* t : {&affine, &qtab, &means, &quats})
        TORCH_CHECK(t->scalar_type() == weights.scalar_type(), "skin_cpu: one floating dtype expected");
    const int64_t N = weights.size(0), L = weights.size(1), B = affine.size(0);
    TORCH_CHECK(weights.dim() == 2, "skin_cpu: weights [N, L] expected");
    TORCH_CHECK(affine.dim() == 4 && affine.size(1) == L && affine.size(2) == 3 && affine.size(3) == 4,
                "skin_cpu: affine [B, L, 3, 4] expected");
    TORCH_CHECK(qtab.dim() == 4 && qtab.size(0) == B && qtab.size(1) == L && qtab.size(2) == L && qtab.size(3) == 4,
                "skin_cpu: qtab [B, L, L, 4] expected");
    TORCH_CHECK(means.dim() == 2 && means.size(0) == N && means.size(1) == 3 && quats.dim() == 2 &&
                    quats.size(0) == N && quats.size(1) == 4,
                "skin_cpu: means [N, 3] and quats [N, 4] expected");
}

}  // namespace

std::vector<at::Tensor> skin_forward(const at::Tensor& weights, const at::Tensor& affine,
                                     const at::Tensor& qtab, const at::Tensor& means, const at::Tensor& quats) {
    check(weights, affine, qtab, means, quats);
    const Sizes z{affine.size(0), weights.size(0), weights.size(1)};
    auto out_means = at::empty({z.B, z.N, 3}, means.options());
    auto out_quats = at::empty({z.B, z.N, 4}, means.options());
    set_omp_threads();
    AT_DISPATCH_FLOATING_TYPES(weights.scalar_type(), "skin_cpu_forward", [&] {
        forward_kernel<scalar_t>(weights.data_ptr<scalar_t>(), affine.data_ptr<scalar_t>(),
                                 qtab.data_ptr<scalar_t>(), means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), z,
                                 out_means.data_ptr<scalar_t>(), out_quats.data_ptr<scalar_t>());
    });
    return {out_means, out_quats};
}

std::vector<at::Tensor> skin_backward(const at::Tensor& weights, const at::Tensor& affine,
                                      const at::Tensor& qtab, const at::Tensor& means, const at::Tensor& quats,
                                      const at::Tensor& v_means, const at::Tensor& v_quats) {
    check(weights, affine, qtab, means, quats);
    const Sizes z{affine.size(0), weights.size(0), weights.size(1)};
    TORCH_CHECK(v_means.is_contiguous() && v_quats.is_contiguous() && v_means.numel() == z.B * z.N * 3 &&
                    v_quats.numel() == z.B * z.N * 4 && v_means.scalar_type() == weights.scalar_type() &&
                    v_quats.scalar_type() == weights.scalar_type(),
                "skin_cpu: v_means [B, N, 3] and v_quats [B, N, 4] contiguous expected");
    auto v_affine = at::zeros_like(affine);
    auto v_qtab = at::zeros_like(qtab);
    set_omp_threads();
    AT_DISPATCH_FLOATING_TYPES(weights.scalar_type(), "skin_cpu_backward", [&] {
        backward_kernel<scalar_t>(weights.data_ptr<scalar_t>(), qtab.data_ptr<scalar_t>(),
                                  means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), z,
                                  v_means.data_ptr<scalar_t>(), v_quats.data_ptr<scalar_t>(),
                                  v_affine.data_ptr<scalar_t>(), v_qtab.data_ptr<scalar_t>());
    });
    return {v_affine, v_qtab};
}
