// CPU colours of spherical-harmonics coefficients (forward + backward), one fused loop per Gaussian and camera.
// The math is api.py's `sh_colors` torch twin (which the tests compare against): the view direction normalised,
// gsplat's real SH basis up to degree 3 (sh.py's constants and signs), colour = sum_k basis_k coeff_k + 0.5,
// clamped at 0. Gradients reach the (unnormalised) directions and the coefficients.
#include "render_cpu.h"

#include <algorithm>
#include <cmath>

namespace {

constexpr double A1 = -0.48860251190292;
constexpr double K4 = 0.5462742152960395, KZ = -1.092548430592079, K6 = 0.9461746957575601,
                 K6C = 0.3153915652525201;
constexpr double K9 = -0.5900435899266435, KT = 1.445305721320277, KA = -2.285228997322329,
                 KB = 0.4570457994644658, KC = 1.865881662950577, KD = -1.119528997770346;

// The first (degree + 1)^2 basis values at the unit direction (x, y, z).
template <typename scalar_t>
inline void bases(int degree, scalar_t x, scalar_t y, scalar_t z, scalar_t* b) {
    b[0] = scalar_t(0.2820947917738781);
    if (degree < 1) return;
    b[1] = A1 * y, b[2] = -A1 * z, b[3] = A1 * x;
    if (degree < 2) return;
    const scalar_t z2 = z * z, bz = KZ * z, c1 = x * x - y * y, s1 = 2 * x * y;
    b[4] = K4 * s1, b[5] = bz * y, b[6] = K6 * z2 - K6C, b[7] = bz * x, b[8] = K4 * c1;
    if (degree < 3) return;
    const scalar_t tc = KA * z2 + KB, tb = KT * z, c2 = x * c1 - y * s1, s2 = x * s1 + y * c1;
    b[9] = K9 * s2, b[10] = tb * s1, b[11] = tc * y, b[12] = z * (KC * z2 + KD), b[13] = tc * x, b[14] = tb * c1,
    b[15] = K9 * c2;
}

// The gradient g [3] at the unit direction (x, y, z) of sum_k v[k] basis_k.
template <typename scalar_t>
inline void bases_vjp(int degree, scalar_t x, scalar_t y, scalar_t z, const scalar_t* v, scalar_t* g) {
    g[0] = g[1] = g[2] = 0;
    if (degree < 1) return;
    g[0] += A1 * v[3], g[1] += A1 * v[1], g[2] -= A1 * v[2];
    if (degree < 2) return;
    g[0] += K4 * 2 * y * v[4] + KZ * z * v[7] + 2 * K4 * x * v[8];
    g[1] += K4 * 2 * x * v[4] + KZ * z * v[5] - 2 * K4 * y * v[8];
    g[2] += KZ * y * v[5] + 2 * K6 * z * v[6] + KZ * x * v[7];
    if (degree < 3) return;
    const scalar_t z2 = z * z, tc = KA * z2 + KB, c1 = x * x - y * y, s1 = 2 * x * y;
    const scalar_t dc2x = 3 * (x * x - y * y), dc2y = -6 * x * y;  // c2 = x^3 - 3 x y^2
    const scalar_t ds2x = 6 * x * y, ds2y = 3 * (x * x - y * y);   // s2 = 3 x^2 y - y^3
    g[0] += K9 * ds2x * v[9] + KT * z * 2 * y * v[10] + tc * v[13] + KT * z * 2 * x * v[14] + K9 * dc2x * v[15];
    g[1] += K9 * ds2y * v[9] + KT * z * 2 * x * v[10] + tc * v[11] - KT * z * 2 * y * v[14] + K9 * dc2y * v[15];
    g[2] += KT * s1 * v[10] + 2 * KA * z * y * v[11] + (3 * KC * z2 + KD) * v[12] + 2 * KA * z * x * v[13] +
            KT * c1 * v[14];
}

// The unit direction u [3] of d and its length (clamped at 1e-12, as the twin's normalisation).
template <typename scalar_t>
inline scalar_t unit(const scalar_t* d, scalar_t* u) {
    const scalar_t norm = std::max(std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]), scalar_t(1e-12));
    for (int i = 0; i < 3; ++i) u[i] = d[i] / norm;
    return norm;
}

// Colour channel ch before the +0.5 and the clamp: basis values b [n_bases] times the coefficients sh [K, 3].
template <typename scalar_t>
inline scalar_t raw_colour(const scalar_t* b, const scalar_t* sh, int64_t n_bases, int ch) {
    scalar_t raw = 0;
    for (int64_t k = 0; k < n_bases; ++k) raw += b[k] * sh[k * 3 + ch];
    return raw;
}

template <typename scalar_t>
void forward_kernel(const scalar_t* dirs, const scalar_t* coeffs, int64_t C, int64_t N, int64_t K, bool per_camera,
                    int degree, scalar_t* colors) {
    const int64_t n_bases = (degree + 1) * (degree + 1);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < C * N; ++i) {
        scalar_t u[3], b[16];
        unit(dirs + i * 3, u);
        bases(degree, u[0], u[1], u[2], b);
        const scalar_t* sh = coeffs + (per_camera ? i : i % N) * K * 3;
        for (int ch = 0; ch < 3; ++ch)
            colors[i * 3 + ch] = std::max(raw_colour(b, sh, n_bases, ch) + scalar_t(0.5), scalar_t(0));
    }
}

// v_dirs [C, N, 3]; v_coeffs [C or 1, N, K, 3] (zeroed by the caller) when given. Shared coefficients (one set for
// all cameras) gather their gradient per Gaussian, so the loop runs over Gaussians, cameras inside.
template <typename scalar_t>
void backward_kernel(const scalar_t* dirs, const scalar_t* coeffs, const scalar_t* v_colors, int64_t C, int64_t N,
                     int64_t K, bool per_camera, int degree, scalar_t* v_dirs, scalar_t* v_coeffs) {
    const int64_t n_bases = (degree + 1) * (degree + 1);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t c = 0; c < C; ++c) {
            const int64_t i = c * N + n, s = per_camera ? i : n;
            scalar_t u[3], b[16], v_b[16], g[3];
            const scalar_t norm = unit(dirs + i * 3, u);
            bases(degree, u[0], u[1], u[2], b);
            const scalar_t* sh = coeffs + s * K * 3;
            scalar_t v_raw[3];
            for (int ch = 0; ch < 3; ++ch)  // clamp_min's gradient passes where its input is >= 0
                v_raw[ch] = raw_colour(b, sh, n_bases, ch) + scalar_t(0.5) >= 0 ? v_colors[i * 3 + ch] : scalar_t(0);
            for (int64_t k = 0; k < n_bases; ++k) {
                v_b[k] = v_raw[0] * sh[k * 3] + v_raw[1] * sh[k * 3 + 1] + v_raw[2] * sh[k * 3 + 2];
                if (v_coeffs != nullptr)
                    for (int ch = 0; ch < 3; ++ch) v_coeffs[s * K * 3 + k * 3 + ch] += b[k] * v_raw[ch];
            }
            bases_vjp(degree, u[0], u[1], u[2], v_b, g);
            const scalar_t along = g[0] * u[0] + g[1] * u[1] + g[2] * u[2];
            const bool clamped = norm <= scalar_t(1e-12);  // the twin divides by the constant there
            for (int j = 0; j < 3; ++j) v_dirs[i * 3 + j] = clamped ? g[j] / norm : (g[j] - u[j] * along) / norm;
        }
    }
}

void check(const at::Tensor& dirs, const at::Tensor& coeffs, int64_t degree) {
    TORCH_CHECK(dirs.device().is_cpu() && coeffs.device().is_cpu() && dirs.is_contiguous() && coeffs.is_contiguous(),
                "sh_cpu: CPU contiguous tensors expected");
    TORCH_CHECK(dirs.scalar_type() == coeffs.scalar_type(), "sh_cpu: one floating dtype expected");
    TORCH_CHECK(degree >= 0 && degree <= 3, "sh_cpu: degree 0..3 expected");
    TORCH_CHECK(dirs.dim() == 3 && dirs.size(2) == 3 && coeffs.dim() == 4 && coeffs.size(3) == 3 &&
                    (coeffs.size(0) == 1 || coeffs.size(0) == dirs.size(0)) && coeffs.size(1) == dirs.size(1) &&
                    coeffs.size(2) >= (degree + 1) * (degree + 1),
                "sh_cpu: dirs [C, N, 3] and coeffs [C or 1, N, K >= (degree + 1)^2, 3] expected");
}

}  // namespace

at::Tensor sh_forward(const at::Tensor& dirs, const at::Tensor& coeffs, int64_t degree) {
    check(dirs, coeffs, degree);
    const int64_t C = dirs.size(0), N = dirs.size(1), K = coeffs.size(2);
    auto colors = at::empty({C, N, 3}, dirs.options());
    set_omp_threads();
    AT_DISPATCH_FLOATING_TYPES(dirs.scalar_type(), "sh_cpu_forward", [&] {
        forward_kernel<scalar_t>(dirs.data_ptr<scalar_t>(), coeffs.data_ptr<scalar_t>(), C, N, K,
                                 coeffs.size(0) == C, int(degree), colors.data_ptr<scalar_t>());
    });
    return colors;
}

std::vector<at::Tensor> sh_backward(const at::Tensor& dirs, const at::Tensor& coeffs, int64_t degree,
                                    const at::Tensor& v_colors, bool need_coeffs) {
    check(dirs, coeffs, degree);
    TORCH_CHECK(v_colors.is_contiguous() && v_colors.sizes() == dirs.sizes() && v_colors.scalar_type() == dirs.scalar_type(),
                "sh_cpu: v_colors [C, N, 3] contiguous expected");
    const int64_t C = dirs.size(0), N = dirs.size(1), K = coeffs.size(2);
    auto v_dirs = at::empty_like(dirs);
    auto v_coeffs = need_coeffs ? at::zeros_like(coeffs) : at::Tensor();
    set_omp_threads();
    AT_DISPATCH_FLOATING_TYPES(dirs.scalar_type(), "sh_cpu_backward", [&] {
        backward_kernel<scalar_t>(dirs.data_ptr<scalar_t>(), coeffs.data_ptr<scalar_t>(),
                                  v_colors.data_ptr<scalar_t>(), C, N, K, coeffs.size(0) == C, int(degree),
                                  v_dirs.data_ptr<scalar_t>(), need_coeffs ? v_coeffs.data_ptr<scalar_t>() : nullptr);
    });
    return {v_dirs, v_coeffs};
}
