"""Pose-reconstruction benchmark on DREAM-format sequences (Panda-3CAM or its look-alikes, `drrobot lookalike`):
joint error, ADD, ADD-AUC, PCK-AUC and speed, with the camera unknown (solved from frame 0) and known, the
from-scratch success rate on random frames, and ablations. Prints a markdown block for BENCHMARKS.md.

    drrobot lookalike --camera all --out outputs/lookalike-bench --frames 80 --seed 1
    python benchmarks/bench_pose.py --checkpoint outputs/panda-model/checkpoint --root outputs/lookalike-bench

The known-camera rows read the true camera from `_ground_truth_camera.json` (look-alikes only). `--spread K` runs
each sequence (camera unknown) on its frames as they are and K - 1 times nudged: 1% of the pixel values, drawn per
frame from the nudge's seed, one grey level up or down. Nothing a camera or JPEG would not do, yet the pipeline's
discrete choices (twins, gauge, reseeds) can flip on it; the spread says how much one run's verdict is worth.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from drrobot.checkpoint import load_checkpoint
from drrobot.data.dream import load_dream
from drrobot.fit.dream_eval import dream_truth, score_reconstruction
from drrobot.fit.frames import DreamFrames
from drrobot.fit.reconstruct import FrameTensors, ReconstructConfig, reconstruct
from drrobot.fit.cameras import scale_intrinsics
from drrobot.fit.keypoint_points import KeypointObserver
from drrobot.fit.solve import solve_from_scratch
from drrobot.fit.trajectory import trajectory_dict, write_trajectory
from drrobot.fit.twins import kinematic_twins, twin_moves
from drrobot.vision.keypoint_net import DETECTOR_DIR, META_FILE, KeypointDetector

SUCCESS_DEG = 10.0


class NudgedFrames:
    """Frames with 1% of their pixel values one grey level up or down, drawn from (seed, frame index)."""

    SHARE = 0.01

    def __init__(self, frames, seed: int):
        self.frames, self.seed, self.names = frames, seed, frames.names

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> np.ndarray:
        image = np.asarray(self.frames[index])  # [H, W, 3] uint8
        rng = np.random.default_rng([self.seed, index])
        chosen = rng.random(image.shape) < self.SHARE
        step = np.where(rng.random(image.shape) < 0.5, -1, 1)
        return np.clip(image.astype(np.int16) + chosen * step, 0, 255).astype(np.uint8)


def run_sequence(model, directory: Path, config: ReconstructConfig, known_camera: bool, max_frames: int | None,
                 known_start: bool = False, detector: KeypointDetector | None = None,
                 trajectory: Path | None = None, nudge: int = 0):  # fmt: skip
    """Reconstruct one sequence (the true camera and/or frame 0's true joints given when asked; its frames nudged
    with seed `nudge` unless 0, `NudgedFrames`); returns its PoseMetrics as a dict (plus timings). With
    `trajectory`, the estimate is also written there (`drrobot pose`'s trajectory.json layout), to look at frame by
    frame."""
    sequence = load_dream(directory, max_frames=max_frames)
    truth = dream_truth(sequence, model)
    viewmat = joints = None
    if known_camera:
        viewmat = torch.tensor(json.loads((directory / "_ground_truth_camera.json").read_text())["viewmat"])
    if known_start:  # unmatched entries (the Panda's finger) start at the middle of their range
        middle = model.joint_spec.denormalize(np.zeros(model.joint_spec.dof))
        joints = torch.as_tensor(np.where(np.isnan(truth.joints[0]), middle, truth.joints[0]), dtype=torch.float32)
    frames = DreamFrames(sequence) if nudge == 0 else NudgedFrames(DreamFrames(sequence), nudge)
    rec = reconstruct(model, frames, torch.as_tensor(sequence.K, dtype=torch.float32), config,
                      viewmat=viewmat, joints=joints, detector=detector)  # fmt: skip
    metrics = score_reconstruction(model, rec.joints.numpy(), rec.viewmats.numpy(), rec.Ks.numpy(), truth, rec.fps)
    if trajectory is not None:
        write_trajectory(trajectory, trajectory_dict(model.joint_spec.names, rec.names, rec.joints, rec.viewmats,
                                                     rec.Ks, rec.losses, (sequence.width, sequence.height)))  # fmt: skip
    track_fps = (len(rec.names) - 1) / max(rec.seconds_track, 1e-9)
    return {**metrics.to_dict(), "seconds_first": rec.seconds_first, "seconds_track": rec.seconds_track,
            "track_fps_all_passes": track_fps, "seconds_per_stage": rec.seconds_per_stage}  # fmt: skip


def scratch_trials(model, directories: list[Path], config: ReconstructConfig, trials: int, seed: int,
                   detector: KeypointDetector | None = None) -> dict:  # fmt: skip
    """Joints and camera from scratch on random frames (each sequence's median background); the time includes the
    frame's foreground and keypoint detection. Also each joint's median error and the trials that found a kinematic
    twin of the truth (within the success bar of a twin, not of the truth)."""
    observer = None if detector is None else KeypointObserver(detector, model)
    rng = np.random.default_rng(seed)
    moves = twin_moves(model.kinematics)
    errors, seconds, per_joint, on_twin = [], [], [], 0
    for k in range(trials):
        directory = directories[k % len(directories)]
        sequence = load_dream(directory)
        truth = dream_truth(sequence, model)
        frames = DreamFrames(sequence)
        width = config.working_width
        height = round(sequence.height * width / sequence.width)
        data = FrameTensors(frames, None, width, height, "median", model.device, config.median_frames, observer)
        f = int(rng.integers(len(frames)))
        K = scale_intrinsics(torch.as_tensor(sequence.K, dtype=torch.float32), width / sequence.width,
                             height / sequence.height)  # fmt: skip
        start = time.perf_counter()
        result = solve_from_scratch(model, data[f], K, config.scratch, config.weights)
        seconds.append(time.perf_counter() - start)
        error = joint_errors_deg(result.joints[0].numpy(), truth.joints[f], truth.scored)
        errors.append(float(error.mean()))
        per_joint.append(error)
        twins = kinematic_twins(model.kinematics, torch.as_tensor(np.nan_to_num(truth.joints[f]), dtype=torch.float32), moves)
        twin_error = [float(joint_errors_deg(result.joints[0].numpy(), t.numpy(), truth.scored).mean()) for t in twins]
        on_twin += errors[-1] >= SUCCESS_DEG and min(twin_error, default=np.inf) < SUCCESS_DEG
        print(f"  scratch {directory.name} frame {f}: {errors[-1]:.1f} deg (per joint "
              f"{' '.join(f'{e:.0f}' for e in error)}), {seconds[-1]:.1f} s", flush=True)  # fmt: skip
    errors = np.array(errors)
    return {"trials": trials, "success_rate": float((errors < SUCCESS_DEG).mean()), "median_error_deg": float(np.median(errors)),
            "mean_seconds": float(np.mean(seconds)), "max_seconds": float(np.max(seconds)), "errors_deg": errors.tolist(),
            "median_error_per_joint_deg": np.median(per_joint, axis=0).tolist(), "on_a_twin": int(on_twin)}  # fmt: skip


def spread_lines(results: dict) -> list[str]:
    """Per sequence, the nudged runs' joint error and ADD-AUC (mean, lowest, highest) and how many meet the goals."""
    lines = ["", "| sequence | runs | joint error (deg) mean, range | ADD-AUC mean, range | <= 4 deg | ADD-AUC >= 0.85 |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    nudged = {name: m for name, m in results.items() if ", nudge " in name}  # the --spread runs only
    for sequence in dict.fromkeys(name.split(",")[0] for name in nudged):
        runs = [m for name, m in nudged.items() if name.split(",")[0] == sequence]
        error = np.array([m["joint_error_deg"] for m in runs])
        auc = np.array([m["add_auc"] for m in runs])
        lines.append(f"| {sequence} | {len(runs)} | {error.mean():.2f}, {error.min():.2f}-{error.max():.2f} "
                     f"| {auc.mean():.3f}, {auc.min():.3f}-{auc.max():.3f} | {int((error <= 4).sum())} "
                     f"| {int((auc >= 0.85).sum())} |")  # fmt: skip
    return lines


def joint_errors_deg(estimate: np.ndarray, truth: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Absolute error in degrees of each scored joint (estimate, truth [J] radians, scored [J] bool)."""
    return np.rad2deg(np.abs(estimate - truth)[scored])


def trajectory_path(out: Path, name: str) -> Path:
    """Where a row's estimate is written (the folder made): <out>/<row name as a folder>/trajectory.json."""
    folder = out / name.replace(", ", "_").replace(" ", "-")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "trajectory.json"


def row(name: str, m: dict) -> str:
    return (f"| {name} | {m['joint_error_deg']:.2f} | {m['add_mm']:.0f} | {m['add_auc']:.3f} | {m['pck_auc']:.3f} | "
            f"{m['seconds_first']:.0f} | {m['track_fps_all_passes']:.2f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("outputs/panda-model/checkpoint"))
    parser.add_argument("--root", type=Path, default=Path("outputs/lookalike-bench"))
    parser.add_argument("--cameras", nargs="+", default=["azure", "kinect360", "realsense"])
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--ablation-frames", type=int, default=60, help="frames of the ablation runs")
    parser.add_argument("--scratch-trials", type=int, default=20)
    parser.add_argument("--scratch-seed", type=int, default=0, help="seed of the from-scratch trials' frames")
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--known-camera-only", action="store_true", help="skip the rows that solve the camera")
    parser.add_argument("--unknown-camera-only", action="store_true", help="skip the rows given the true camera")
    parser.add_argument("--only-known-start", action="store_true",
                        help="only the rows with the true camera and frame 0's true joints (tracking alone)")
    parser.add_argument("--only-known-joints", action="store_true",
                        help="only the rows with frame 0's true joints and the camera searched (a robot's joint log)")
    parser.add_argument("--only-scratch", action="store_true", help="only the from-scratch trials on random frames")
    parser.add_argument("--spread", type=int, default=0, metavar="K",
                        help="only the camera-unknown runs, each sequence as it is and nudged K - 1 times")
    parser.add_argument("--detector", type=Path, default=None,
                        help="keypoint detector (default: the one next to the checkpoint, when it exists)")
    parser.add_argument("--no-detector", action="store_true", help="solve without a keypoint detector")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench-pose"))
    args = parser.parse_args()
    model = load_checkpoint(args.checkpoint).model.eval()
    detector = None
    beside = args.checkpoint.resolve().parent / DETECTOR_DIR
    if not args.no_detector and (args.detector or (beside / META_FILE).is_file()):
        detector = KeypointDetector.load(args.detector or beside)
        print(f"keypoint detector: {args.detector or beside}", flush=True)
    base = ReconstructConfig()
    directories = [args.root / c for c in args.cameras]
    sequences = [] if args.only_scratch else directories
    args.no_ablations = args.no_ablations or args.only_scratch
    results: dict = {}
    known_start_rows = {"only_known_start": (True, "camera and frame-0 joints known"),
                        "only_known_joints": (False, "camera unknown, frame-0 joints known")}  # fmt: skip
    for flag, (known_camera, label) in known_start_rows.items():
        for directory in sequences if getattr(args, flag) else []:
            name = f"{directory.name}, {label}"
            results[name] = run_sequence(model, directory, base, known_camera, args.max_frames, True, detector,
                                         trajectory_path(args.out, name))  # fmt: skip
            print(row(name, results[name]), flush=True)
    for directory in sequences if args.spread else []:
        for nudge in range(args.spread):
            name = f"{directory.name}, camera unknown, nudge {nudge}"
            results[name] = run_sequence(model, directory, base, False, args.max_frames, detector=detector,
                                         trajectory=trajectory_path(args.out, name), nudge=nudge)  # fmt: skip
            print(row(name, results[name]), flush=True)
    if args.only_known_start or args.only_known_joints or args.spread:
        args.no_ablations, args.scratch_trials, sequences = True, 0, []
    for directory in sequences:
        for known in (True,) if args.known_camera_only else (False,) if args.unknown_camera_only else (False, True):
            name = f"{directory.name}, camera {'known' if known else 'unknown'}"
            results[name] = run_sequence(model, directory, base, known, args.max_frames, detector=detector,
                                         trajectory=trajectory_path(args.out, name))  # fmt: skip
            print(row(name, results[name]), flush=True)
    if not args.no_ablations:
        ablations = {
            "appearance field on": dataclasses.replace(base, track=dataclasses.replace(base.track, fit=dataclasses.replace(base.track.fit, appearance=True))),
            "border background (no background model)": dataclasses.replace(base, background="border"),
            "no edge term": dataclasses.replace(base, weights=dataclasses.replace(base.weights, edges=0.0)),
            "no coverage term": dataclasses.replace(base, weights=dataclasses.replace(base.weights, coverage=0.0)),
        }  # fmt: skip
        for label, config in ablations.items():
            name = f"{directories[0].name}, camera known, {label}"
            results[name] = run_sequence(model, directories[0], config, True, args.ablation_frames)
            print(row(name, results[name]), flush=True)
        single = dataclasses.replace(base, scratch=dataclasses.replace(base.scratch, cameras=1, finalists=1))
        name = f"{directories[0].name}, camera unknown, one camera placement (no multi-start)"
        results[name] = run_sequence(model, directories[0], single, False, args.ablation_frames)
        print(row(name, results[name]), flush=True)
    if args.scratch_trials:
        results["scratch"] = scratch_trials(model, directories, base, args.scratch_trials, args.scratch_seed, detector)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_pose.json").write_text(json.dumps(results, indent=2))
    header = ["| run | joint error (deg) | ADD (mm) | ADD-AUC | PCK-AUC (20 px) | frame-0 solve (s) | tracking (frames/s) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    lines = [f"{args.checkpoint}, {args.root}, detector {'none' if detector is None else 'yes'}, CPU ({torch.get_num_threads()} threads), torch {torch.__version__}, "
             f"{platform.machine()}", ""] + header  # fmt: skip
    lines += [row(n, m) for n, m in results.items() if n != "scratch"]
    lines += spread_lines(results) if args.spread else []
    stages = [f"- {n}: " + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in m["seconds_per_stage"].items())
              for n, m in results.items() if n != "scratch"]  # fmt: skip
    lines += ["", "Seconds per stage:", *stages] if stages else []
    if "scratch" in results:
        s = results["scratch"]
        lines += ["", f"From scratch on {s['trials']} random frames: {100 * s['success_rate']:.0f}% under "
                      f"{SUCCESS_DEG:g} deg (median {s['median_error_deg']:.1f} deg), {s['mean_seconds']:.0f} s mean, "
                      f"{s['max_seconds']:.0f} s max; median error per joint "
                      f"{', '.join(f'{e:.1f}' for e in s['median_error_per_joint_deg'])} deg; "
                      f"{s['on_a_twin']} on a kinematic twin of the truth"]  # fmt: skip
    report = "\n".join(lines)
    (args.out / "bench_pose.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
