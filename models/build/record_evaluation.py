"""Record ``edgeface eval lfw --json`` results in models/manifest.json (section ``evaluation``).

    edgeface eval lfw --data ../shared/data/lfw --pipelines edgeface,dlib --json > lfw.json
    python models/build/record_evaluation.py lfw.json [more.json ...]

Several result files (e.g. one per pipeline, run in parallel) are merged. Each embedder entry
also gets a short ``lfw`` summary so the figures sit next to the model they describe.
"""

from __future__ import annotations

import datetime
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import merge_model_entry, update_section  # noqa: E402

VARIANT_DESCRIPTIONS = {
    "int8": "edgeface MTCNN int8 detection + 5-point alignment, int8 embedder",
    "fp32": "edgeface MTCNN int8 detection + 5-point alignment, fp32 embedder",
    "int8+flip": "as int8, embedding averaged with that of the mirrored chip",
    "int8+grid": "as int8, mean of 18 embeddings: 9 alignments (scale 0.95/1/1.05 x rotation -4/0/+4 degrees) and their mirror images (edgeface.vision.augment)",
    "int8+flip enrolled, int8 probe": "int8+flip template of one image vs plain int8 embedding of the other, each pair both ways round (12,000 comparisons)",
    "int8+grid enrolled, int8 probe": "int8+grid template of one image vs plain int8 embedding of the other, each pair both ways round (12,000 comparisons): how a door compares",
    "dlib": "dlib's own pipeline: HOG detector, 5-point shape predictor, get_face_chip, dlib ResNet",
    "dlib-chips-int8": "dlib's HOG + 5-point chips, edgeface int8 embedder",
    "dlib-chips-fp32": "dlib's HOG + 5-point chips, edgeface fp32 embedder",
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(paths: list[str]) -> None:
    results: dict[str, dict[str, object]] = {}
    fallbacks: dict[str, int] = {}
    for path in paths:
        report = json.loads(Path(path).read_text())
        results.update(report["results"])
        fallbacks.update(report["fallbacks"])
    for variant, figures in results.items():
        figures["pipeline"] = VARIANT_DESCRIPTIONS.get(variant, variant)
    update_section(
        "evaluation",
        {
            "lfw": {
                "protocol": "LFW View-2 pairs.txt: 10 folds x (300 same + 300 different); "
                "accuracy with each fold's threshold chosen on the other nine; TAR at FAR 1e-3 "
                "over all 6,000 pairs; Euclidean distance of L2-normalised embeddings "
                "(dlib: raw descriptors, as dlib compares them)",
                "data": "../shared/data/lfw (deep-funneled 250x250, the 7,701 images of pairs.txt)",
                "command": "edgeface eval lfw --data ../shared/data/lfw --pipelines edgeface-grid,dlib",
                "date": datetime.date.today().isoformat(),
                "machine": f"{cpu_name()}, {platform.machine()}",
                "images_without_detection": fallbacks,
                "results": results,
            }
        },
    )
    for variant, key in (("int8", "embedder_int8"), ("fp32", "embedder_fp32")):
        if variant in results:
            summary = {
                "edgeface_pipeline_accuracy": results[variant]["accuracy_mean"],
                "edgeface_pipeline_tar_at_far_1e-3": results[variant]["tar_at_far"],
            }
            chips = f"dlib-chips-{variant}"
            if chips in results:
                summary["dlib_chips_accuracy"] = results[chips]["accuracy_mean"]
            merge_model_entry(key, {"lfw": summary})


if __name__ == "__main__":
    main(sys.argv[1:])
