// CPU EWA projection of 3D Gaussians into pinhole cameras (forward + backward), fused per (camera, Gaussian).
// The math is projection.py's `project_gaussians` line by line (its torch twin, which the tests compare against):
// world->camera, the perspective Jacobian with the 0.3*tan(fov) clamp, cov2d dilated by eps2d, conic, the
// opacity-aware radii and culling, and the blur compensation with gsplat's gradient. Gradients reach means,
// covars and viewmats (not Ks). Parallel over Gaussians (OpenMP); viewmat gradients are reduced per thread.
#include "render_cpu.h"

#include <algorithm>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

constexpr double kAlphaThreshold = 1.0 / 255.0;
constexpr double kMaxExtend = 3.33;

struct Settings {
    int64_t width, height;
    double eps2d, near_plane, far_plane, radius_clip;
    bool calc_compensations, has_opacities;
};

// Everything the forward computes for one (camera, Gaussian) that the backward needs again.
template <typename scalar_t>
struct Projected {
    scalar_t p[3];      // camera-space mean
    scalar_t S[9];      // camera-space covariance R covar R^T
    scalar_t zz, rz;    // depth used (1 when out of [near, far]) and its inverse
    scalar_t ux, uy;    // x / z, y / z before the frustum clamp
    bool free_x, free_y;  // not clamped
    scalar_t tx, ty;
    scalar_t ja, jb, jc, jd;
    scalar_t c00, c01, c11;  // cov2d before eps2d
    scalar_t det_orig, det;  // det is 1 where the Gaussian is invalid
    bool in_depth, valid;
};

template <typename scalar_t>
inline void project_one(const scalar_t* R, const scalar_t* t, const scalar_t* K, const scalar_t* m,
                        const scalar_t* covar, const Settings& s, Projected<scalar_t>& q) {
    for (int i = 0; i < 3; ++i) q.p[i] = R[i * 3] * m[0] + R[i * 3 + 1] * m[1] + R[i * 3 + 2] * m[2] + t[i];
    scalar_t RS[9];  // R covar
    for (int i = 0; i < 3; ++i)
        for (int k = 0; k < 3; ++k)
            RS[i * 3 + k] = R[i * 3] * covar[k] + R[i * 3 + 1] * covar[3 + k] + R[i * 3 + 2] * covar[6 + k];
    for (int i = 0; i < 3; ++i)
        for (int l = 0; l < 3; ++l)
            q.S[i * 3 + l] = RS[i * 3] * R[l * 3] + RS[i * 3 + 1] * R[l * 3 + 1] + RS[i * 3 + 2] * R[l * 3 + 2];
    const scalar_t x = q.p[0], y = q.p[1], z = q.p[2];
    q.in_depth = z >= s.near_plane && z <= s.far_plane;
    q.zz = q.in_depth ? z : scalar_t(1);
    const scalar_t fx = K[0], cx = K[2], fy = K[4], cy = K[5];
    const scalar_t W = scalar_t(s.width), H = scalar_t(s.height);
    const scalar_t lim_x_pos = (W - cx) / fx + scalar_t(0.3) * (scalar_t(0.5) * W / fx);
    const scalar_t lim_x_neg = cx / fx + scalar_t(0.3) * (scalar_t(0.5) * W / fx);
    const scalar_t lim_y_pos = (H - cy) / fy + scalar_t(0.3) * (scalar_t(0.5) * H / fy);
    const scalar_t lim_y_neg = cy / fy + scalar_t(0.3) * (scalar_t(0.5) * H / fy);
    q.rz = scalar_t(1) / q.zz;
    q.ux = x * q.rz;
    q.uy = y * q.rz;
    q.free_x = q.ux > -lim_x_neg && q.ux < lim_x_pos;
    q.free_y = q.uy > -lim_y_neg && q.uy < lim_y_pos;
    q.tx = q.zz * std::min(std::max(q.ux, -lim_x_neg), lim_x_pos);
    q.ty = q.zz * std::min(std::max(q.uy, -lim_y_neg), lim_y_pos);
    q.ja = fx * q.rz;
    q.jb = -fx * q.tx * q.rz * q.rz;
    q.jc = fy * q.rz;
    q.jd = -fy * q.ty * q.rz * q.rz;
    const scalar_t* S = q.S;
    q.c00 = q.ja * q.ja * S[0] + 2 * q.ja * q.jb * S[2] + q.jb * q.jb * S[8];
    q.c01 = q.ja * q.jc * S[1] + q.ja * q.jd * S[2] + q.jb * q.jc * S[5] + q.jb * q.jd * S[8];
    q.c11 = q.jc * q.jc * S[4] + 2 * q.jc * q.jd * S[5] + q.jd * q.jd * S[8];
    q.det_orig = q.c00 * q.c11 - q.c01 * q.c01;
    const scalar_t det = (q.c00 + s.eps2d) * (q.c11 + s.eps2d) - q.c01 * q.c01;
    q.valid = q.in_depth && det > 0;
    q.det = q.valid ? det : scalar_t(1);
}

template <typename scalar_t>
void forward_kernel(const scalar_t* means, const scalar_t* covars, const scalar_t* viewmats, const scalar_t* Ks,
                    const scalar_t* opacities, int64_t C, int64_t N, const Settings& s, scalar_t* means2d,
                    scalar_t* conics, scalar_t* depths, int32_t* radii, scalar_t* compensations) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t c = 0; c < C; ++c) {
            const scalar_t* V = viewmats + c * 16;
            const scalar_t R[9] = {V[0], V[1], V[2], V[4], V[5], V[6], V[8], V[9], V[10]};
            const scalar_t t[3] = {V[3], V[7], V[11]};
            const scalar_t* K = Ks + c * 9;
            Projected<scalar_t> q;
            project_one(R, t, K, means + n * 3, covars + n * 9, s, q);
            const int64_t i = c * N + n;
            const scalar_t mx = K[0] * q.p[0] * q.rz + K[2], my = K[4] * q.p[1] * q.rz + K[5];
            means2d[i * 2] = mx;
            means2d[i * 2 + 1] = my;
            const scalar_t c00e = q.c00 + scalar_t(s.eps2d), c11e = q.c11 + scalar_t(s.eps2d);
            conics[i * 3] = c11e / q.det;
            conics[i * 3 + 1] = -q.c01 / q.det;
            conics[i * 3 + 2] = c00e / q.det;
            depths[i] = q.p[2];
            scalar_t compensation = 1;
            if (s.calc_compensations) {
                compensation = std::sqrt(std::max(q.det_orig / q.det, scalar_t(0)));
                compensations[i] = compensation;
            }
            bool valid = q.valid;
            scalar_t extend = scalar_t(kMaxExtend);
            if (s.has_opacities) {
                const scalar_t opac = opacities[n] * compensation;
                valid = valid && opac >= scalar_t(kAlphaThreshold);
                extend = std::min(std::sqrt(scalar_t(2) * std::log(std::max(opac, scalar_t(kAlphaThreshold)) /
                                                                   scalar_t(kAlphaThreshold))),
                                  scalar_t(kMaxExtend));
            }
            const scalar_t rx = std::ceil(extend * std::sqrt(std::max(c00e, scalar_t(0))));
            const scalar_t ry = std::ceil(extend * std::sqrt(std::max(c11e, scalar_t(0))));
            valid = valid && (rx > s.radius_clip || ry > s.radius_clip);
            valid = valid && mx + rx > 0 && mx - rx < scalar_t(s.width) && my + ry > 0 && my - ry < scalar_t(s.height);
            radii[i * 2] = valid ? int32_t(rx) : 0;
            radii[i * 2 + 1] = valid ? int32_t(ry) : 0;
        }
    }
}

template <typename scalar_t>
void backward_kernel(const scalar_t* means, const scalar_t* covars, const scalar_t* viewmats, const scalar_t* Ks,
                     int64_t C, int64_t N, const Settings& s, const scalar_t* v_means2d, const scalar_t* v_conics,
                     const scalar_t* v_depths, const scalar_t* v_compensations, scalar_t* v_means,
                     scalar_t* v_covars, scalar_t* v_viewmats) {
    const int threads = at::get_num_threads();
    std::vector<double> partial(size_t(threads) * C * 12, 0.0);  // per thread: dL/dR (9) and dL/dt (3) per camera
#pragma omp parallel
    {
#ifdef _OPENMP
        double* acc = &partial[size_t(omp_get_thread_num()) * C * 12];
#else
        double* acc = &partial[0];
#endif
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; ++n) {
            const scalar_t* m = means + n * 3;
            const scalar_t* covar = covars + n * 9;
            scalar_t* vm = v_means + n * 3;
            scalar_t* vcov = v_covars + n * 9;
            for (int64_t c = 0; c < C; ++c) {
                const scalar_t* V = viewmats + c * 16;
                const scalar_t R[9] = {V[0], V[1], V[2], V[4], V[5], V[6], V[8], V[9], V[10]};
                const scalar_t t[3] = {V[3], V[7], V[11]};
                const scalar_t* K = Ks + c * 9;
                const scalar_t fx = K[0], fy = K[4];
                Projected<scalar_t> q;
                project_one(R, t, K, m, covar, s, q);
                const int64_t i = c * N + n;
                const scalar_t eps = scalar_t(s.eps2d);
                const scalar_t c00e = q.c00 + eps, c11e = q.c11 + eps, det = q.det;
                // conics = (c11e, -c01, c00e) / det
                const scalar_t ga = v_conics[i * 3], gb = v_conics[i * 3 + 1], gc = v_conics[i * 3 + 2];
                scalar_t g_c00e = gc / det, g_c11e = ga / det, g_c01 = -gb / det;
                scalar_t g_det = (-ga * c11e + gb * q.c01 - gc * c00e) / (det * det);
                // compensation = sqrt(max(det_orig / det, 0)), gradient 0.5 / (compensation + 1e-6)
                scalar_t g_det_orig = 0;
                if (s.calc_compensations) {
                    const scalar_t ratio = q.det_orig / det;
                    if (ratio > 0) {
                        const scalar_t g_ratio = v_compensations[i] * scalar_t(0.5) / (std::sqrt(ratio) + scalar_t(1e-6));
                        g_det_orig = g_ratio / det;
                        g_det -= g_ratio * q.det_orig / (det * det);
                    }
                }
                if (q.valid) {  // det = c00e c11e - c01^2 (otherwise the constant 1)
                    g_c00e += g_det * c11e;
                    g_c11e += g_det * c00e;
                    g_c01 -= 2 * g_det * q.c01;
                }
                // det_orig = c00 c11 - c01^2; c00e = c00 + eps2d
                const scalar_t g_c00 = g_c00e + g_det_orig * q.c11;
                const scalar_t g_c11 = g_c11e + g_det_orig * q.c00;
                g_c01 -= 2 * g_det_orig * q.c01;
                // cov2d = J S J^T, reading S's upper triangle as the twin does
                const scalar_t* S = q.S;
                const scalar_t ja = q.ja, jb = q.jb, jc = q.jc, jd = q.jd;
                scalar_t gS[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
                gS[0] = g_c00 * ja * ja;
                gS[2] = g_c00 * 2 * ja * jb + g_c01 * ja * jd;
                gS[8] = g_c00 * jb * jb + g_c01 * jb * jd + g_c11 * jd * jd;
                gS[1] = g_c01 * ja * jc;
                gS[5] = g_c01 * jb * jc + g_c11 * 2 * jc * jd;
                gS[4] = g_c11 * jc * jc;
                const scalar_t g_ja = g_c00 * (2 * ja * S[0] + 2 * jb * S[2]) + g_c01 * (jc * S[1] + jd * S[2]);
                const scalar_t g_jb = g_c00 * (2 * ja * S[2] + 2 * jb * S[8]) + g_c01 * (jc * S[5] + jd * S[8]);
                const scalar_t g_jc = g_c01 * (ja * S[1] + jb * S[5]) + g_c11 * (2 * jc * S[4] + 2 * jd * S[5]);
                const scalar_t g_jd = g_c01 * (ja * S[2] + jb * S[8]) + g_c11 * (2 * jc * S[5] + 2 * jd * S[8]);
                // J = [[fx rz, 0, -fx tx rz^2], [0, fy rz, -fy ty rz^2]]
                const scalar_t rz = q.rz, rz2 = rz * rz;
                scalar_t g_rz = g_ja * fx + g_jc * fy - 2 * rz * (g_jb * fx * q.tx + g_jd * fy * q.ty);
                const scalar_t g_tx = -g_jb * fx * rz2, g_ty = -g_jd * fy * rz2;
                // means2d = (fx x rz + cx, fy y rz + cy)
                const scalar_t gmx = v_means2d[i * 2], gmy = v_means2d[i * 2 + 1];
                scalar_t g_x = gmx * fx * rz, g_y = gmy * fy * rz;
                g_rz += gmx * fx * q.p[0] + gmy * fy * q.p[1];
                // tx = zz clamp(x rz), ty = zz clamp(y rz)
                scalar_t g_zz = g_tx * (q.tx * rz) + g_ty * (q.ty * rz);
                if (q.free_x) {
                    const scalar_t g_ux = g_tx * q.zz;
                    g_x += g_ux * rz;
                    g_rz += g_ux * q.p[0];
                }
                if (q.free_y) {
                    const scalar_t g_uy = g_ty * q.zz;
                    g_y += g_uy * rz;
                    g_rz += g_uy * q.p[1];
                }
                g_zz -= g_rz * rz2;  // rz = 1 / zz
                const scalar_t g_z = (q.in_depth ? g_zz : scalar_t(0)) + v_depths[i];
                const scalar_t gp[3] = {g_x, g_y, g_z};
                // p = R m + t
                for (int k = 0; k < 3; ++k) vm[k] += R[k] * gp[0] + R[3 + k] * gp[1] + R[6 + k] * gp[2];
                double* a = acc + c * 12;
                for (int r = 0; r < 3; ++r) {
                    for (int k = 0; k < 3; ++k) a[r * 3 + k] += double(gp[r] * m[k]);
                    a[9 + r] += double(gp[r]);
                }
                // S = R covar R^T: d covar = R^T gS R, dR = gS R covar^T + gS^T R covar
                scalar_t gSR[9], RC[9], RCt[9];  // gS R, R covar, R covar^T
                for (int r = 0; r < 3; ++r)
                    for (int k = 0; k < 3; ++k) {
                        gSR[r * 3 + k] = gS[r * 3] * R[k] + gS[r * 3 + 1] * R[3 + k] + gS[r * 3 + 2] * R[6 + k];
                        RC[r * 3 + k] = R[r * 3] * covar[k] + R[r * 3 + 1] * covar[3 + k] + R[r * 3 + 2] * covar[6 + k];
                        RCt[r * 3 + k] = R[r * 3] * covar[k * 3] + R[r * 3 + 1] * covar[k * 3 + 1] + R[r * 3 + 2] * covar[k * 3 + 2];
                    }
                for (int r = 0; r < 3; ++r)
                    for (int k = 0; k < 3; ++k) {
                        // (R^T gS R)[r][k] = sum_i R[i][r] (gS R)[i][k]
                        vcov[r * 3 + k] += R[r] * gSR[k] + R[3 + r] * gSR[3 + k] + R[6 + r] * gSR[6 + k];
                        // (gS R covar^T)[r][k] = sum_i gS[r][i] (R covar^T)[i][k]; (gS^T R covar)[r][k] likewise
                        scalar_t dR = 0;
                        for (int l = 0; l < 3; ++l) dR += gS[r * 3 + l] * RCt[l * 3 + k] + gS[l * 3 + r] * RC[l * 3 + k];
                        a[r * 3 + k] += double(dR);
                    }
            }
        }
    }
    for (int th = 0; th < threads; ++th)
        for (int64_t c = 0; c < C; ++c) {
            const double* a = &partial[(size_t(th) * C + c) * 12];
            scalar_t* g = v_viewmats + c * 16;
            for (int r = 0; r < 3; ++r) {
                for (int k = 0; k < 3; ++k) g[r * 4 + k] += scalar_t(a[r * 3 + k]);
                g[r * 4 + 3] += scalar_t(a[9 + r]);
            }
        }
}

void check(const std::vector<const at::Tensor*>& tensors, const at::Tensor& means) {
    for (const auto* t : tensors) {
        TORCH_CHECK(t->device().is_cpu() && t->is_contiguous(), "project_cpu: CPU contiguous tensors expected");
        TORCH_CHECK(t->scalar_type() == means.scalar_type(), "project_cpu: one floating dtype expected");
    }
}

Settings settings(int64_t width, int64_t height, double eps2d, double near_plane, double far_plane,
                  double radius_clip, bool calc_compensations, bool has_opacities) {
    return Settings{width, height, eps2d, near_plane, far_plane, radius_clip, calc_compensations, has_opacities};
}

}  // namespace

std::vector<at::Tensor> project_forward(const at::Tensor& means, const at::Tensor& covars, const at::Tensor& viewmats,
                                        const at::Tensor& Ks, const at::Tensor& opacities, int64_t width,
                                        int64_t height, double eps2d, double near_plane, double far_plane,
                                        double radius_clip, bool calc_compensations) {
    const bool has_opacities = opacities.numel() > 0;
    check({&means, &covars, &viewmats, &Ks}, means);
    if (has_opacities) check({&opacities}, means);
    const int64_t C = viewmats.size(0), N = means.size(0);
    const Settings s = settings(width, height, eps2d, near_plane, far_plane, radius_clip, calc_compensations,
                                has_opacities);
    auto means2d = at::empty({C, N, 2}, means.options());
    auto conics = at::empty({C, N, 3}, means.options());
    auto depths = at::empty({C, N}, means.options());
    auto radii = at::empty({C, N, 2}, means.options().dtype(at::kInt));
    auto compensations = calc_compensations ? at::empty({C, N}, means.options()) : at::empty({0}, means.options());
    set_omp_threads();
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_cpu_forward", [&] {
        forward_kernel<scalar_t>(means.data_ptr<scalar_t>(), covars.data_ptr<scalar_t>(), viewmats.data_ptr<scalar_t>(),
                                 Ks.data_ptr<scalar_t>(), has_opacities ? opacities.data_ptr<scalar_t>() : nullptr,
                                 C, N, s, means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(),
                                 depths.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
                                 calc_compensations ? compensations.data_ptr<scalar_t>() : nullptr);
    });
    return {means2d, conics, depths, radii, compensations};
}

std::vector<at::Tensor> project_backward(const at::Tensor& means, const at::Tensor& covars, const at::Tensor& viewmats,
                                         const at::Tensor& Ks, int64_t width, int64_t height, double eps2d,
                                         double near_plane, double far_plane, bool calc_compensations,
                                         const at::Tensor& v_means2d, const at::Tensor& v_conics,
                                         const at::Tensor& v_depths, const at::Tensor& v_compensations) {
    check({&means, &covars, &viewmats, &Ks, &v_means2d, &v_conics, &v_depths}, means);
    if (calc_compensations) check({&v_compensations}, means);
    const int64_t C = viewmats.size(0), N = means.size(0);
    const Settings s = settings(width, height, eps2d, near_plane, far_plane, 0.0, calc_compensations, false);
    auto v_means = at::zeros_like(means);
    auto v_covars = at::zeros_like(covars);
    auto v_viewmats = at::zeros_like(viewmats);
    set_omp_threads();
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_cpu_backward", [&] {
        backward_kernel<scalar_t>(means.data_ptr<scalar_t>(), covars.data_ptr<scalar_t>(), viewmats.data_ptr<scalar_t>(),
                                  Ks.data_ptr<scalar_t>(), C, N, s, v_means2d.data_ptr<scalar_t>(),
                                  v_conics.data_ptr<scalar_t>(), v_depths.data_ptr<scalar_t>(),
                                  calc_compensations ? v_compensations.data_ptr<scalar_t>() : nullptr,
                                  v_means.data_ptr<scalar_t>(), v_covars.data_ptr<scalar_t>(),
                                  v_viewmats.data_ptr<scalar_t>());
    });
    return {v_means, v_covars, v_viewmats};
}
