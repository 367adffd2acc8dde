"""Train the default MobileNetV3-FPN Mask R-CNN on synthetic data within a time budget (GPU).

    python benchmarks/train_default_model.py --out OUT_DIR [--minutes 6] [--n-images 1500]

1. renders a synthetic COCO dataset with ``flakefinder.synth.export_coco`` (512 x 512 px,
   graphene/hBN/MoS2/WTe2), in parallel shards over the CPU cores, under ``--work``;
2. measures the speed of a few training steps, then sizes the four-stage schedule to the budget
   (stages heads / 4+ / all / all when pretrained weights are in the torch hub cache; without
   them two "all" stages with trainable batch norm and a warm-up, since a frozen random backbone
   learns nothing);
3. trains with :func:`flakefinder.train.loop.train`; the checkpoint stays in ``--work``, the
   model folder (fp16 weights) goes to ``--out`` with history.csv and loss.png;
4. evaluates on a held-out synthetic set with ``flakefinder.evaluate`` when that works
   (needs pycocotools), writing ``OUT/benchmark_eval.json``; always writes
   ``OUT/benchmark.json`` (timings, sizes, losses).

Needs torch/torchvision and flakefinder's core dependencies (numpy, opencv, pillow, scipy,
matplotlib, rich, typer, pyyaml). albumentations is optional (the numpy augmentation backend is
used without it); pycocotools is optional for training (own RLE/polygon decoder) and needed
only for the COCO metrics of step 4. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

MATERIALS = ("graphene", "hBN", "MoS2", "WTe2")


def _pycocotools_shim() -> bool:
    """Without pycocotools, register a stand-in ``pycocotools.mask.encode`` (all the synthetic
    export needs) built on flakefinder's numpy RLE encoder; returns True when the shim is used.
    COCO metrics (evaluation) still need the real package."""
    try:
        import pycocotools.mask  # noqa: F401
    except ImportError:
        import types

        import numpy as np

        from flakefinder.coco import encode_rle

        def encode(mask: np.ndarray) -> dict:
            rle = encode_rle(np.asarray(mask).astype(bool))
            return {"size": rle["size"], "counts": rle["counts"].encode("ascii")}

        pkg, mod = types.ModuleType("pycocotools"), types.ModuleType("pycocotools.mask")
        mod.encode = encode  # type: ignore[attr-defined]
        pkg.mask = mod  # type: ignore[attr-defined]
        sys.modules.update({"pycocotools": pkg, "pycocotools.mask": mod})
        return True
    return False


def _shard(args: tuple[str, int, int, int, float]) -> str:
    _pycocotools_shim()
    from flakefinder.synth.coco import export_coco

    out, n, size, seed, um_per_px = args
    export_coco(
        out, n_images=n, materials=MATERIALS, width_px=size, height_px=size, seed=seed,
        um_per_px=um_per_px,
    )  # fmt: skip
    return out


def make_dataset(
    root: Path, n_images: int, size: int, seed: int, workers: int, um_per_px: float = 0.4
) -> Path:
    """Render ``n_images`` in shards and merge them into ``root/annotations.json``."""
    marker = root / "annotations.json"
    if marker.is_file() and json.loads(marker.read_text()).get("info", {}).get("bench") == [
        n_images, size, seed, um_per_px,
    ]:  # fmt: skip
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    n_shards = max(1, min(workers, n_images // 8 or 1))
    sizes = [n_images // n_shards + (k < n_images % n_shards) for k in range(n_shards)]
    jobs = [
        (str(root / f"shard{k:02d}"), sizes[k], size, seed * 1000 + k, um_per_px)
        for k in range(n_shards)
    ]
    with ProcessPoolExecutor(n_shards) as pool:
        list(pool.map(_shard, jobs))
    merged: dict = {"images": [], "annotations": [], "categories": None}
    for out, *_ in jobs:
        coco = json.loads((Path(out) / "annotations.json").read_text())
        merged["categories"] = merged["categories"] or coco["categories"]
        id_map = {}
        for im in coco["images"]:
            id_map[im["id"]] = len(merged["images"]) + 1
            rel = Path(out).name + "/" + im["file_name"]
            merged["images"].append({**im, "id": id_map[im["id"]], "file_name": rel})
        for a in coco["annotations"]:
            a = {**a, "id": len(merged["annotations"]) + 1, "image_id": id_map[a["image_id"]]}
            merged["annotations"].append(a)
    merged["info"] = {"bench": [n_images, size, seed, um_per_px]}
    marker.write_text(json.dumps(merged))
    return root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="model folder to write")
    ap.add_argument(
        "--work", type=Path, default=None, help="datasets + checkpoint (default OUT/../work)"
    )
    ap.add_argument("--minutes", type=float, default=6.0, help="training time budget")
    ap.add_argument("--n-images", type=int, default=1500)
    ap.add_argument("--eval-images", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument(
        "--um-per-px",
        type=float,
        default=0.4,
        help="pixel size of the rendered images; 512 px x 0.4 µm = the field of view of a 1024² "
        "scan tile at 0.2 µm/px, which the detector letterboxes to 512",
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--init-from", type=Path, default=None,
        help="continue from this model folder (same classes) instead of random weights",
    )  # fmt: skip
    args = ap.parse_args()

    import torch

    from flakefinder.detect.maskrcnn_model import _pretrained_candidates, hub_checkpoint_dir
    from flakefinder.train.loop import train
    from flakefinder.train.recipe import Stage, load_recipe

    t0 = time.monotonic()
    work = args.work or args.out.parent / (args.out.name + "_work")
    workers = max(1, (os.cpu_count() or 2) - 1)
    report: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                    "pycocotools_shim": _pycocotools_shim()}  # fmt: skip
    train_dir = make_dataset(
        work / "train", args.n_images, args.size, args.seed, workers, args.um_per_px
    )
    report["dataset_seconds"] = round(time.monotonic() - t0, 1)
    print(f"dataset ready in {report['dataset_seconds']} s: {train_dir}", flush=True)

    have_pretrained = any(
        (hub_checkpoint_dir() / url.rsplit("/", 1)[-1]).is_file()
        for _, url, _ in _pretrained_candidates("mobilenet_v3_fpn", "coco")
    )
    base = load_recipe("cpu_small").with_overrides(
        name="default_mobilenet", image_size=args.size, batch_size=args.batch_size,
        num_workers=min(8, workers), max_test_images=64, rois_per_image=256,
        rpn_post_nms_train=1000, seed=args.seed,
    )  # fmt: skip
    if have_pretrained:
        shape = [("heads", "heads", 1.0, 0.15), ("stage4+", "4+", 1.0, 0.15),
                 ("all", "all", 0.1, 0.5), ("all", "all", 0.01, 0.2)]  # fmt: skip
        base = base.with_overrides(weights="coco", warmup_iterations=50)
    else:
        shape = [("all", "all", 1.0, 0.75), ("all", "all", 0.1, 0.25)]
        base = base.with_overrides(weights="none", frozen_batchnorm=False, warmup_iterations=200)
    lr = 0.02
    if args.init_from is not None:  # already trained: no warm-up, half the learning rate
        base = base.with_overrides(warmup_iterations=0)
        lr = 0.01
    report["pretrained"] = have_pretrained
    report["init_from"] = str(args.init_from) if args.init_from else None

    # speed calibration: two short epochs in a throwaway folder; the second one (warm: workers,
    # cudnn autotuning and allocations done) gives the time per iteration, evaluation included
    calib = base.with_overrides(
        stages=(Stage("all", "all", lr * 0.1, 2),), iterations_per_epoch=20, max_test_images=8
    )
    train(
        calib, train_dir, work / "calib", resume=False, device=args.device, progress=False, log=None
    )
    from flakefinder.train.history import read_history

    sec_per_it = float(read_history(work / "calib" / "history.csv")[-1]["seconds"]) / 20.0
    budget_its = max(40, int(args.minutes * 60.0 / (sec_per_it * 1.1)))
    ipe = max(10, budget_its // 20)
    stages = tuple(
        Stage(name, layers, lr * f, max(1, round(frac * budget_its / ipe)))
        for name, layers, f, frac in shape
    )
    rec = base.with_overrides(stages=stages, iterations_per_epoch=ipe)
    report.update(sec_per_it_calibration=round(sec_per_it, 4), iterations_planned=ipe * rec.total_epochs,
                  recipe=rec.to_dict())  # fmt: skip
    print(f"{sec_per_it:.3f} s/it -> {rec.total_epochs} epochs x {ipe} iterations", flush=True)
    shutil.rmtree(work / "calib", ignore_errors=True)

    tt = time.monotonic()
    train(rec, train_dir, args.out, work_dir=work, resume=False, device=args.device,
          init_from=args.init_from, time_budget_s=args.minutes * 60.0 * 1.15,
          progress=False)  # fmt: skip
    report["train_seconds"] = round(time.monotonic() - tt, 1)
    report["metrics"] = json.loads((args.out / "metrics.json").read_text())
    report["weights_mb"] = round((args.out / "weights.pt").stat().st_size / 1e6, 2)
    print(f"weights.pt: {report['weights_mb']} MB (limit 25)", flush=True)

    try:
        if report["pycocotools_shim"]:
            raise ImportError("pycocotools is not installed (COCO metrics need it)")
        from flakefinder.detect.maskrcnn import MaskRCNNDetector
        from flakefinder.evaluate.run import evaluate_dataset

        test_dir = make_dataset(
            work / "test", args.eval_images, args.size, args.seed + 7919, workers, args.um_per_px
        )
        dev = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
        dev = "cpu" if dev == "auto" else dev
        detector = MaskRCNNDetector.from_folder(args.out, device=dev)
        te = time.monotonic()
        ev = evaluate_dataset(detector, test_dir, work / "eval")
        report["eval_seconds"] = round(time.monotonic() - te, 1)
        (args.out / "benchmark_eval.json").write_text(
            json.dumps(ev.to_dict(), indent=2, default=str)
        )
        report["eval"] = "ok"
    except Exception as exc:  # evaluation is optional (e.g. pycocotools missing)
        report["eval"] = f"skipped: {type(exc).__name__}: {exc}"
    report["total_seconds"] = round(time.monotonic() - t0, 1)
    (args.out / "benchmark.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items() if k != "recipe"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
