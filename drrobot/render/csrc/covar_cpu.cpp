// CPU 3D covariances from rotations and scales (forward + backward), one fused loop per Gaussian.
// The math is projection.py's `quat_scale_to_covar` torch twin (which the tests compare against): the quaternion
// normalised, R its rotation matrix, M = R diag(s), covar = M M^T. Gradients reach quats and scales.
#include "render_cpu.h"

#include <cmath>

namespace {

// Unit quaternion (w, x, y, z) and its rotation matrix (row-major), from an unnormalised one.
template <typename scalar_t>
inline scalar_t rotation(const scalar_t* u, scalar_t* q, scalar_t* R) {
    const scalar_t norm = std::sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2] + u[3] * u[3]);
    for (int k = 0; k < 4; ++k) q[k] = u[k] / norm;
    const scalar_t w = q[0], x = q[1], y = q[2], z = q[3];
    R[0] = 1 - 2 * (y * y + z * z), R[1] = 2 * (x * y - w * z), R[2] = 2 * (x * z + w * y);
    R[3] = 2 * (x * y + w * z), R[4] = 1 - 2 * (x * x + z * z), R[5] = 2 * (y * z - w * x);
    R[6] = 2 * (x * z - w * y), R[7] = 2 * (y * z + w * x), R[8] = 1 - 2 * (x * x + y * y);
    return norm;
}

template <typename scalar_t>
void forward_kernel(const scalar_t* quats, const scalar_t* scales, int64_t N, scalar_t* covars) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        scalar_t q[4], R[9];
        rotation(quats + n * 4, q, R);
        const scalar_t* s = scales + n * 3;
        scalar_t* out = covars + n * 9;
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j)  // (R S)(R S)^T = sum_k R_ik s_k^2 R_jk
                out[i * 3 + j] = R[i * 3] * s[0] * s[0] * R[j * 3] + R[i * 3 + 1] * s[1] * s[1] * R[j * 3 + 1] +
                                 R[i * 3 + 2] * s[2] * s[2] * R[j * 3 + 2];
    }
}

template <typename scalar_t>
void backward_kernel(const scalar_t* quats, const scalar_t* scales, const scalar_t* v_covars, int64_t N,
                     scalar_t* v_quats, scalar_t* v_scales) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        scalar_t q[4], R[9];
        const scalar_t norm = rotation(quats + n * 4, q, R);
        const scalar_t* s = scales + n * 3;
        const scalar_t* G = v_covars + n * 9;
        // covar = M M^T with M = R diag(s): dM = (G + G^T) M
        scalar_t M[9], gM[9];
        for (int i = 0; i < 3; ++i)
            for (int k = 0; k < 3; ++k) M[i * 3 + k] = R[i * 3 + k] * s[k];
        for (int i = 0; i < 3; ++i)
            for (int k = 0; k < 3; ++k) {
                scalar_t acc = 0;
                for (int j = 0; j < 3; ++j) acc += (G[i * 3 + j] + G[j * 3 + i]) * M[j * 3 + k];
                gM[i * 3 + k] = acc;
            }
        scalar_t g[9];  // dL/dR
        for (int k = 0; k < 3; ++k) {
            v_scales[n * 3 + k] = gM[k] * R[k] + gM[3 + k] * R[3 + k] + gM[6 + k] * R[6 + k];
            for (int i = 0; i < 3; ++i) g[i * 3 + k] = gM[i * 3 + k] * s[k];
        }
        // R(q) of the unit quaternion, then q = u / |u|
        const scalar_t w = q[0], x = q[1], y = q[2], z = q[3];
        const scalar_t gq[4] = {
            2 * (-z * g[1] + y * g[2] + z * g[3] - x * g[5] - y * g[6] + x * g[7]),
            2 * (y * g[1] + z * g[2] + y * g[3] - 2 * x * g[4] - w * g[5] + z * g[6] + w * g[7] - 2 * x * g[8]),
            2 * (-2 * y * g[0] + x * g[1] + w * g[2] + x * g[3] + z * g[5] - w * g[6] + z * g[7] - 2 * y * g[8]),
            2 * (-2 * z * g[0] - w * g[1] + x * g[2] + w * g[3] - 2 * z * g[4] + y * g[5] + x * g[6] + y * g[7]),
        };
        const scalar_t along = gq[0] * w + gq[1] * x + gq[2] * y + gq[3] * z;
        for (int k = 0; k < 4; ++k) v_quats[n * 4 + k] = (gq[k] - q[k] * along) / norm;
    }
}

void check(const at::Tensor& quats, const at::Tensor& scales) {
    TORCH_CHECK(quats.device().is_cpu() && scales.device().is_cpu() && quats.is_contiguous() && scales.is_contiguous(),
                "covar_cpu: CPU contiguous tensors expected");
    TORCH_CHECK(quats.scalar_type() == scales.scalar_type(), "covar_cpu: one floating dtype expected");
    TORCH_CHECK(quats.dim() == 2 && quats.size(1) == 4 && scales.dim() == 2 && scales.size(1) == 3 &&
                    quats.size(0) == scales.size(0),
                "covar_cpu: quats [N, 4] and scales [N, 3] expected");
}

}  // namespace

at::Tensor covar_forward(const at::Tensor& quats, const at::Tensor& scales) {
    check(quats, scales);
    const int64_t N = quats.size(0);
    auto covars = at::empty({N, 3, 3}, quats.options());
    set_omp_threads();
    AT_DISPATCH_FLOATING_TYPES(quats.scalar_type(), "covar_cpu_forward", [&] {
        forward_kernel<scalar_t>(quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(), N, covars.data_ptr<scalar_t>());
    });
    return covars;
}

std::vector<at::Tensor> covar_backward(const at::Tensor& quats, const at::Tensor& scales, const at::Tensor& v_covars) {
    check(quats, scales);
    TORCH_CHECK(v_covars.is_contiguous() && v_covars.scalar_type() == quats.scalar_type() &&
                    v_covars.numel() == quats.size(0) * 9,
                "covar_cpu: v_covars [N, 3, 3] contiguous expected");
    const int64_t N = quats.size(0);
    auto v_quats = at::empty_like(quats);
    auto v_scales = at::empty_like(scales);
    set_omp_threads();
    AT_DISPATCH_FLOATING_TYPES(quats.scalar_type(), "covar_cpu_backward", [&] {
        backward_kernel<scalar_t>(quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
                                  v_covars.data_ptr<scalar_t>(), N, v_quats.data_ptr<scalar_t>(),
                                  v_scales.data_ptr<scalar_t>());
    });
    return {v_quats, v_scales};
}
