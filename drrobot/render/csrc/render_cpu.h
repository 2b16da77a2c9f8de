// The CPU rendering kernels of drrobot.render (declarations; bindings.cpp exposes them to Python).
#pragma once
#include <torch/extension.h>

#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

// OpenMP uses as many threads as torch does (torch.set_num_threads).
inline void set_omp_threads() {
#ifdef _OPENMP
    omp_set_num_threads(at::get_num_threads());
#endif
}

// composite_cpu.cpp: alpha compositing of tile-binned, depth-sorted 2D Gaussians.
std::vector<at::Tensor> composite_forward(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                          const at::Tensor& opacities, const at::Tensor& offsets, const at::Tensor& ids,
                                          int64_t n_images, int64_t height, int64_t width, int64_t tile_size);
at::Tensor composite_backward(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                              const at::Tensor& opacities, const at::Tensor& offsets, const at::Tensor& ids,
                              int64_t n_images, int64_t height, int64_t width, int64_t tile_size,
                              const at::Tensor& alphas, const at::Tensor& n_proc, const at::Tensor& v_fg,
                              const at::Tensor& v_alpha);

// project_cpu.cpp: EWA projection of 3D Gaussians into pinhole cameras.
std::vector<at::Tensor> project_forward(const at::Tensor& means, const at::Tensor& covars, const at::Tensor& viewmats,
                                        const at::Tensor& Ks, const at::Tensor& opacities, int64_t width,
                                        int64_t height, double eps2d, double near_plane, double far_plane,
                                        double radius_clip, bool calc_compensations);
std::vector<at::Tensor> project_backward(const at::Tensor& means, const at::Tensor& covars, const at::Tensor& viewmats,
                                         const at::Tensor& Ks, int64_t width, int64_t height, double eps2d,
                                         double near_plane, double far_plane, bool calc_compensations,
                                         const at::Tensor& v_means2d, const at::Tensor& v_conics,
                                         const at::Tensor& v_depths, const at::Tensor& v_compensations);

// covar_cpu.cpp: 3D covariances R(q) diag(s)^2 R(q)^T from quaternions and scales.
at::Tensor covar_forward(const at::Tensor& quats, const at::Tensor& scales);
std::vector<at::Tensor> covar_backward(const at::Tensor& quats, const at::Tensor& scales, const at::Tensor& v_covars);

// skin_cpu.cpp: linear-blend skinning of Gaussian means and rotations (gradients to the link motions only).
std::vector<at::Tensor> skin_forward(const at::Tensor& weights, const at::Tensor& affine,
                                     const at::Tensor& qtab, const at::Tensor& means, const at::Tensor& quats);
std::vector<at::Tensor> skin_backward(const at::Tensor& weights, const at::Tensor& affine,
                                      const at::Tensor& qtab, const at::Tensor& means, const at::Tensor& quats,
                                      const at::Tensor& v_means, const at::Tensor& v_quats);

// tiles_cpu.cpp: binning of projected Gaussians into tiles, each tile's list sorted front to back.
std::vector<at::Tensor> isect_tiles_cpu(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& depths,
                                        int64_t width, int64_t height, int64_t tile_size);

// ssim_cpu.cpp: the structural similarity map of image planes over the valid region of a separable window.
std::vector<at::Tensor> ssim_forward(const at::Tensor& x, const at::Tensor& y, const at::Tensor& taps);
std::vector<at::Tensor> ssim_backward(const at::Tensor& x, const at::Tensor& y, const at::Tensor& taps,
                                      const at::Tensor& stats, const at::Tensor& v_map, bool need_y);

// sh_cpu.cpp: colours of spherical-harmonics coefficients in the view directions (gradients to both).
at::Tensor sh_forward(const at::Tensor& dirs, const at::Tensor& coeffs, int64_t degree);
std::vector<at::Tensor> sh_backward(const at::Tensor& dirs, const at::Tensor& coeffs, int64_t degree,
                                    const at::Tensor& v_colors, bool need_coeffs);
