// Python bindings of the CPU rendering kernels (one extension module, built by drrobot/render/extension.py).
#include "render_cpu.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("forward", &composite_forward, "composite forward (CPU)");
    m.def("backward", &composite_backward, "composite backward (CPU)");
    m.def("project_forward", &project_forward, "EWA projection forward (CPU)");
    m.def("project_backward", &project_backward, "EWA projection backward (CPU)");
    m.def("covar_forward", &covar_forward, "3D covariances from quaternions and scales (CPU)");
    m.def("covar_backward", &covar_backward, "3D covariances' backward (CPU)");
    m.def("skin_forward", &skin_forward, "linear-blend skinning of Gaussians (CPU)");
    m.def("skin_backward", &skin_backward, "linear-blend skinning's backward (CPU)");
    m.def("ssim_forward", &ssim_forward, "SSIM map of image planes (CPU)");
    m.def("ssim_backward", &ssim_backward, "SSIM map's backward (CPU)");
    m.def("sh_forward", &sh_forward, "colours of SH coefficients (CPU)");
    m.def("sh_backward", &sh_backward, "colours of SH coefficients' backward (CPU)");
    m.def("isect_tiles", &isect_tiles_cpu, "tile binning, front to back (CPU)");
}
