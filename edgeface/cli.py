"""``edgeface …`` — the command line. Thin: parse arguments, call the library, print.

Every command that reports results takes ``--json`` (one JSON document on stdout; progress
goes to stderr). Errors a user can fix print one line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgeface import __version__
from edgeface.errors import EdgefaceError
from edgeface.output import emit


def cmd_models(args: argparse.Namespace) -> int:
    """List the shipped models, check each against its manifest sha256, and show whether this
    board's runtime runs it entirely in XNNPACK."""
    from edgeface.errors import ModelLoadError
    from edgeface.model_files import MODEL_FILES, manifest, models_dir, verify_model_file
    from edgeface.runtime import available_runtime, delegation_report, load_interpreter

    directory = models_dir()
    entries = manifest().get("models", {})
    rows = []
    for name, file_name in MODEL_FILES.items():
        entry = entries.get(file_name.removesuffix(".tflite"), {})
        row: dict[str, Any] = {"name": name, "file": file_name, "bytes": entry.get("bytes")}
        try:
            interpreter = load_interpreter(verify_model_file(name), num_threads=1)
            partitions, outside = delegation_report(interpreter)
            row.update(sha256_ok=True, xnnpack_partitions=partitions, outside_xnnpack=outside)
        except ModelLoadError as exc:
            row.update(sha256_ok=False, error=str(exc))
        rows.append(row)
    runtime = available_runtime().name
    lines = [f"models directory: {directory}", f"TFLite runtime: {runtime}", ""]
    for r in rows:
        if not r["sha256_ok"]:
            lines.append(f"{r['name']:<14} {r['file']:<26} BROKEN: {r['error']}")
            continue
        delegated = (
            "fully in XNNPACK"
            if r["xnnpack_partitions"] == 1 and not r["outside_xnnpack"]
            else f"{r['xnnpack_partitions']} XNNPACK partition(s), outside: "
            + (", ".join(r["outside_xnnpack"]) or "-")
        )
        lines.append(f"{r['name']:<14} {r['file']:<26} {r['bytes'] or 0:>10,d} B  ok  {delegated}")
    emit(args, {"directory": str(directory), "runtime": runtime, "models": rows}, "\n".join(lines))
    return 0 if all(r["sha256_ok"] for r in rows) else 1


def cmd_bench(args: argparse.Namespace) -> int:
    """Model latency (fp32 vs int8), then end-to-end pipelines, optionally beside the peers."""
    from edgeface.bench.model_latency import format_table, measure
    from edgeface.bench.pipelines import BenchPlan, format_report, plot, ratios, run_plan

    # Checked first: the model table takes a while, and the pipelines run in worker processes.
    if args.frames > 0 and args.input:
        check_bench_input(args.input)
    if args.plot:
        from edgeface.commands import check_draw_path

        check_draw_path(args.plot, "--plot")
    payload: dict[str, Any] = {}
    text: list[str] = []
    if not args.skip_models:
        rows = measure(threads=args.model_threads, repeats=args.repeat)
        payload["models"] = [row.as_dict() for row in rows]
        text += [
            "per-model latency (median of runs; int8 x = fp32 ms / int8 ms)",
            format_table(rows),
            "",
        ]
    if args.door:
        text.append(door_benchmark(args, payload))
    if args.frames > 0:
        plan = BenchPlan(
            input=args.input,
            frames=args.frames,
            min_face=args.min_face,
            threads=args.threads,
            peers=args.peers,
            show_progress=not args.json,
        )
        reports = run_plan(plan)
        payload["pipelines"] = reports
        payload["ratios"] = ratios(reports)
        text.append(format_report(reports, plan))
        if args.plot:
            plot(reports, args.plot)
            text.append(f"plot written to {args.plot}")
    emit(args, payload, "\n".join(text))
    return 0


def check_bench_input(text: str) -> None:
    """Refuse an ``--input`` that cannot be read before anything runs: a missing one, and
    one the frame reader would wait on for ever (a FIFO) or cannot read (a socket)."""
    from edgeface.door.sources import SourceError, source_file_mode
    from edgeface.files import is_link_loop

    if not Path(text).exists() and not is_link_loop(Path(text)):
        raise EdgefaceError(f"--input {text}: no such file or folder")
    try:
        source_file_mode(text)
    except SourceError as exc:
        raise EdgefaceError(f"--input {exc}") from None


def door_benchmark(args: argparse.Namespace, payload: dict[str, Any]) -> str:
    """Run edgeface.bench.door in its own process (its memory is the daemon's, not ours)."""
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeface.bench.door",
            str(args.door_trials),
            str(args.door_seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise EdgefaceError("the door benchmark failed (see the messages above)")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    payload["door"] = report
    unlock, steady = report["unlock_latency_ms"], report["steady_10fps"]
    return (
        f"door: first frame with the enrolled face -> relay on: median {unlock['median']} ms, "
        f"p95 {unlock['p95']} ms ({unlock['unlocked']}/{unlock['runs']} runs unlocked)\n"
        f"door at 10 fps for {steady['seconds']} s: {steady['frames_per_second']} frames/s, "
        f"CPU {steady['cpu_percent_of_one_core']} % of one core, peak RSS "
        f"{steady['peak_rss_mb']} MB\n"
    )


def cmd_eval_lfw(args: argparse.Namespace) -> int:
    """LFW View-2: 10-fold accuracy and TAR@FAR for each pipeline variant."""
    from edgeface.eval.lfw import (
        embed_all,
        evaluate_enrolled,
        evaluate_pairs,
        read_pairs,
        unique_images,
    )
    from edgeface.eval.lfw_pipelines import PIPELINES, FallbackCounter, pipeline_identity

    data = Path(args.data)
    if args.cache and Path(args.cache).exists() and not Path(args.cache).is_dir():
        raise EdgefaceError(f"--cache {args.cache}: is a file; give a folder to keep caches in")
    pairs = read_pairs(data)
    names = unique_images(pairs)
    results: dict[str, Any] = {}
    fallbacks: dict[str, int] = {}
    for pipeline in args.pipelines.split(","):
        if pipeline not in PIPELINES:
            raise EdgefaceError(
                f"unknown pipeline {pipeline!r}; choose from {', '.join(PIPELINES)}"
            )
        counter = FallbackCounter()
        cache = Path(args.cache) / f"lfw-{pipeline}.npz" if args.cache else None
        embed = PIPELINES[pipeline](args.threads, counter)
        per_variant = embed_all(
            data,
            names,
            embed,
            f"LFW {pipeline}",
            show_progress=not args.quiet,
            cache_file=cache,
            counter=counter,
            identity=pipeline_identity(pipeline),
        )
        fallbacks[pipeline] = counter.fallbacks
        for variant, embeddings in per_variant.items():
            results[variant] = evaluate_pairs(pairs, embeddings, far=args.far).as_dict()
        # A door stores a template once and compares plain live embeddings with it.
        for template in ("int8+flip", "int8+grid"):
            if template in per_variant and "int8" in per_variant:
                results[f"{template} enrolled, int8 probe"] = evaluate_enrolled(
                    pairs, per_variant[template], per_variant["int8"], far=args.far
                ).as_dict()
    width = max(18, *(len(variant) for variant in results))
    header = (
        f"{'variant':<{width}} {'accuracy':>16} {'TAR@FAR=' + format(args.far, 'g'):>14}"
        f" {'thr':>7} {'thr@FAR':>7}"
    )
    lines = [f"LFW View-2, {len(pairs)} pairs, {len(names)} images ({data})", header]
    for variant, r in results.items():
        lines.append(
            f"{variant:<{width}} {100 * r['accuracy_mean']:>9.2f} ± {100 * r['accuracy_std']:.2f} %"
            f" {100 * r['tar_at_far']:>12.2f} % {r['best_threshold']:>7.3f}"
            f" {r['far_threshold']:>7.3f}"
        )
    lines.append(
        "images without a detection (fallback used): "
        + ", ".join(f"{k} {v}" for k, v in fallbacks.items())
    )
    emit(
        args,
        {"pairs": len(pairs), "images": len(names), "results": results, "fallbacks": fallbacks},
        "\n".join(lines),
    )
    return 0


def cmd_eval_identify(args: argparse.Namespace) -> int:
    """Open-set identification on folders of identities (see edgeface.eval.openset)."""
    from edgeface.commands import pipeline_from
    from edgeface.eval.openset import evaluate_open_set, load_identities
    from edgeface.recognition.matcher import DEFAULT_MARGIN, DEFAULT_THRESHOLD
    from edgeface.vision.image_io import read_rgb

    identities = load_identities([Path(d) for d in args.data])  # before the models load
    pipeline = pipeline_from(args, flip_average=args.flip)

    def embed(path: Path) -> Any:
        try:
            faces = pipeline.analyse(read_rgb(path), embed_rejected=True)
        except EdgefaceError:
            return None
        if not faces:
            return None
        return max(faces, key=lambda f: f.detection.area).embedding

    def enrol_embed(path: Path) -> Any:
        """The template ``edgeface enroll --augment`` would store for this image."""
        try:
            rgb = read_rgb(path)
            faces = pipeline.analyse(rgb, embed=False)
        except EdgefaceError:
            return None
        if not faces:
            return None
        largest = max(faces, key=lambda f: f.detection.area)
        return pipeline.template_embedding(rgb, largest, args.enrol_augment)

    report = evaluate_open_set(
        identities,
        embed,
        enrol=args.enrol,
        unknown_fraction=args.unknown,
        trials=args.trials,
        threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold,
        margin=DEFAULT_MARGIN,
        seed=args.seed,
        show_progress=not args.json,
        enrol_embed=None if args.enrol_augment == "none" else enrol_embed,
        fuse=args.fuse,
    )
    emit(
        args,
        {**report.as_dict(), "enrol_augmentation": args.enrol_augment, "fuse": args.fuse},
        report.summary(args.enrol, args.enrol_augment),
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The door daemon (what systemd starts)."""
    from edgeface.door.service import run_service

    return run_service(
        Path(args.config),
        source=args.source,
        pin_factory=args.pin_factory,
        print_events=args.print_events,
    )


def doctor_status(ok: bool, warning: bool) -> str:
    """The first column of a doctor line: a warning passes (the door would start) but must
    not read "ok" beside the checks that need nothing."""
    return "FAIL" if not ok else "WARN" if warning else "ok  "


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check config, runtime, models, gallery, camera, GPIO and broker."""
    from edgeface.door.doctor import run_checks

    checks = run_checks(Path(args.config))
    lines = [f"{doctor_status(c.ok, c.warning)} {c.name:<8} {c.detail}" for c in checks]
    emit(args, [c.__dict__ for c in checks], "\n".join(lines))
    return 0 if all(c.ok for c in checks) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """The real daemon on a clip of public-domain portraits, with mock GPIO."""
    from edgeface.door.demo import run_demo

    return run_demo(broker=args.broker)


def cmd_audit(args: argparse.Namespace) -> int:
    """``edgeface audit verify``: is the hash chain of the audit trail intact? Exit 0 if so, 1
    with the first broken file:line and why if not, 2 when there is nothing to check."""
    from edgeface.door.audit import AuditFileError, log_files, parse_head, verify
    from edgeface.errors import shown_value

    keep = None  # known from the configuration only: then deleted oldest files are found
    if args.log:
        path = Path(args.log)
    else:
        from edgeface.config import load_config

        config = load_config(args.config)
        path, keep = config.audit_path, config.audit.keep
    head = None
    if args.head:
        try:
            head = parse_head(args.head)
        except ValueError as exc:
            raise EdgefaceError(
                f"--head {shown_value(args.head)}: {exc}; give SEQ:HASH or the JSON retained "
                "on <base>/audit/head"
            ) from None
    if not log_files(path):
        raise EdgefaceError(f"{path}: no audit log there")
    try:
        report = verify(path, head, keep)
    except AuditFileError as exc:  # a FIFO, a device, a link loop: the message names it
        raise EdgefaceError(str(exc)) from None
    except OSError as exc:
        raise EdgefaceError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if report.ok and report.first_seq is None:
        # Empty files: nothing to check, as when there is no log (not "intact: None..None").
        raise EdgefaceError(f"{path}: no audit entries in it, nothing to verify")
    if report.ok:
        text = (
            f"intact: {report.entries} entries ({report.first_seq}..{report.last_seq}) in "
            f"{len(report.files)} file(s); head {report.last_seq}:{report.head}"
        )
    else:
        text = f"TAMPERED: {report.problem}"
    text += "".join(f"\nwarning: {w}" for w in report.warnings)
    emit(args, report.as_dict(), text)
    return 0 if report.ok else 1


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type for whole numbers with a floor (``--min-face`` below the detector's
    smallest window, a negative ``--seed``, ``--frames -5``): a usage error naming the floor
    instead of a traceback from deep inside the library."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
        return value

    parse.__name__ = f"int_at_least_{minimum}"
    return parse


#: argparse type for counts that must be at least 1 (a clear usage error, not a crash).
positive_int = int_at_least(1)


def finite_float(
    low: float, high: float, low_inclusive: bool = False, high_inclusive: bool = False
) -> Callable[[str], float]:
    """argparse type for a finite number in a range. ``float()`` takes ``nan`` and ``inf``,
    and a NaN threshold or timeout compares false with everything, so without this such a
    value silently means "always" or "never" (or hangs) instead of being refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        above = value >= low if low_inclusive else value > low
        below = value <= high if high_inclusive else value < high
        if not (above and below):
            raise argparse.ArgumentTypeError(
                f"{value:g} must be {'>=' if low_inclusive else '>'} {low:g} and "
                f"{'<=' if high_inclusive else '<'} {high:g}"
            )
        return value

    parse.__name__ = "finite_float"
    return parse


def thread_counts(text: str) -> list[int]:
    """argparse type for ``--model-threads``: a comma list of thread counts, each >= 1."""
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() and int(part) >= 1 for part in parts):
        raise argparse.ArgumentTypeError(
            f"{text!r} must be a comma-separated list of thread counts of at least 1 (e.g. 1,2)"
        )
    return [int(part) for part in parts]


#: Smallest face MTCNN's P-Net can see (its input window, edgeface.vision.mtcnn.PNET_WINDOW;
#: spelled out so that argument parsing loads no numpy/OpenCV).
MIN_FACE_PIXELS = 12
#: Thresholds and margins are Euclidean distances between unit vectors: always in [0, 2].
threshold_type = finite_float(0.0, 2.0)
margin_type = finite_float(0.0, 2.0, low_inclusive=True)
#: ``gallery push`` waits: finite and bounded (``time.sleep`` overflows on 1e12 seconds).
MAX_SURVEY_SECONDS = 3600.0
MAX_PUSH_SECONDS = 86400.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeface", description="Face-recognition door access for small Linux boards."
    )
    parser.add_argument("--version", action="version", version=f"edgeface {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from edgeface import commands as recognition

    engine = argparse.ArgumentParser(add_help=False)
    engine.add_argument(
        "--detector",
        choices=("mtcnn", "haar", "auto"),
        default="auto",
        help="face detector policy (default auto: MTCNN, or the Haar cascade alone when MTCNN "
        "cannot load; switching to Haar+O-Net when frames are too slow is the daemon's "
        "detector.frame_budget_ms, which commands do not set)",
    )
    engine.add_argument(
        "--min-face",
        type=int_at_least(MIN_FACE_PIXELS),
        default=40,
        help=f"smallest face in pixels (at least {MIN_FACE_PIXELS}; default: %(default)s)",
    )
    engine.add_argument(
        "--precision",
        choices=("int8", "fp32"),
        default="int8",
        help="exports of all models (default: %(default)s; a gallery only matches the embedder "
        "it was enrolled with)",
    )
    engine.add_argument(
        "--detector-precision",
        choices=("int8", "fp32", "auto"),
        default=None,
        help="MTCNN exports only (auto: per network the faster here; default: --precision)",
    )
    engine.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="TFLite threads (default: cores, at most 4)",
    )
    engine.add_argument("--json", action="store_true", help="print JSON")
    gallery_option = argparse.ArgumentParser(add_help=False)
    gallery_option.add_argument(
        "--gallery",
        type=Path,
        default=recognition.default_gallery_path(),
        help="gallery file (default $EDGEFACE_GALLERY or ~/.local/share/edgeface/gallery.json)",
    )
    matching = argparse.ArgumentParser(add_help=False)
    matching.add_argument(
        "--threshold",
        type=threshold_type,
        default=recognition.DEFAULTS["threshold"],
        help="accept distance (default: %(default)s, calibrated on LFW for FAR 1e-3)",
    )

    detect = commands.add_parser("detect", parents=[engine], help="find faces in an image")
    detect.add_argument("image")
    detect.add_argument("--draw", metavar="OUT.jpg", help="write the image with boxes drawn")
    detect.set_defaults(func=recognition.cmd_detect)

    verify = commands.add_parser(
        "verify", parents=[engine, matching], help="are two photos the same person?"
    )
    verify.add_argument("image_a")
    verify.add_argument("image_b")
    verify.set_defaults(func=recognition.cmd_verify)

    enroll = commands.add_parser(
        "enroll", parents=[engine, gallery_option], help="add a person to the gallery"
    )
    enroll.add_argument("name")
    enroll.add_argument("images", nargs="+", metavar="IMG")
    enroll.add_argument(
        "--augment",
        # edgeface.vision.augment's AUGMENTATIONS and DEFAULT_AUGMENTATION, spelled out so that
        # argument parsing loads no numpy/OpenCV (tests/test_augment.py keeps them equal).
        choices=("none", "flip", "grid"),
        default="grid",
        help="how each photo becomes a template: its chip only, + mirror image, or a 3x3 grid "
        "of alignments + mirrors, averaged (default: %(default)s; costs time only at enrolment)",
    )
    enroll.add_argument(
        "--threshold",
        type=threshold_type,
        default=recognition.DEFAULTS["door_threshold"],
        help="the door's recognition.threshold: a photo the door would take for another "
        "enrolled person is refused (default: %(default)s, the configuration's default)",
    )
    enroll.add_argument(
        "--margin",
        type=margin_type,
        default=recognition.DEFAULTS["margin"],
        help="the door's recognition.margin: a photo within threshold + margin of another "
        "person is enrolled with a warning (default: %(default)s)",
    )
    enroll.add_argument(
        "--force",
        action="store_true",
        help="enrol photos that do not look like NAME's templates (a changed look) or that "
        "look like another enrolled person (twins), with a warning",
    )
    enroll.set_defaults(func=recognition.cmd_enroll)

    identify = commands.add_parser(
        "identify", parents=[engine, gallery_option, matching], help="who is in this photo?"
    )
    identify.add_argument("image")
    identify.add_argument(
        "--margin",
        type=margin_type,
        default=recognition.DEFAULTS["margin"],
        help="minimum distance gap between best and second identity (default: %(default)s)",
    )
    identify.add_argument("--draw", metavar="OUT.jpg", help="write the image with names drawn")
    identify.set_defaults(func=recognition.cmd_identify)

    gallery = commands.add_parser("gallery", help="list or edit the gallery")
    gallery_actions = gallery.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = gallery_actions.add_parser("list", parents=[gallery_option], help="who is enrolled")
    listing.add_argument("--json", action="store_true", help="print JSON")
    remove = gallery_actions.add_parser("remove", parents=[gallery_option], help="remove a person")
    remove.add_argument("name")
    remove.add_argument("--json", action="store_true", help="print JSON")
    rollback = gallery_actions.add_parser(
        "rollback", parents=[gallery_option], help="restore the version before the last change"
    )
    rollback.add_argument("--json", action="store_true", help="print JSON")
    export = gallery_actions.add_parser("export", parents=[gallery_option], help="write it out")
    export.add_argument("--out", default="-", help="file (default: standard output)")
    importer = gallery_actions.add_parser(
        "import", parents=[gallery_option], help="merge a gallery file in (validated, atomic)"
    )
    importer.add_argument("file")
    importer.add_argument("--json", action="store_true", help="print JSON")
    differ = gallery_actions.add_parser(
        "diff", parents=[gallery_option], help="compare with a file"
    )
    differ.add_argument("other")
    differ.add_argument("--json", action="store_true", help="print JSON")
    pusher = gallery_actions.add_parser(
        "push",
        parents=[gallery_option],
        help="sign and publish it to a door or fleet group; wait for their acknowledgements",
    )
    where = pusher.add_mutually_exclusive_group(required=True)
    where.add_argument("--device", help="one door's device_id")
    where.add_argument("--group", help="a fleet group (the doors' push.groups)")
    pusher.add_argument(
        "--photos",
        nargs="+",
        action="append",
        metavar="NAME IMG",
        help="instead of the gallery: add NAME from these photos, enrolled by each door "
        "(repeatable; sent as a delta, not retained)",
    )
    pusher.add_argument("--key", required=True, help="signing key file (HMAC or Ed25519 PEM)")
    pusher.add_argument("--key-id", required=True, help="the id the doors know the key by")
    pusher.add_argument("--broker", required=True, help="HOST[:PORT] of the MQTT broker")
    pusher.add_argument("--username")
    pusher.add_argument("--password-file", help="file whose first line is the password")
    pusher.add_argument("--tls-ca", help="CA certificate: connect with TLS")
    pusher.add_argument("--base-topic", default="edgeface", help="default: %(default)s")
    pusher.add_argument("--version", type=int, help="default: newer than every door's version")
    waiting = pusher.add_mutually_exclusive_group()
    waiting.add_argument(
        "--expect", help="comma-separated device ids to wait for (default: the group's doors)"
    )
    waiting.add_argument(
        "--expect-count", type=int, metavar="N", help="succeed once N doors have applied it"
    )
    pusher.add_argument(
        "--timeout",
        type=finite_float(0.0, MAX_PUSH_SECONDS, low_inclusive=True, high_inclusive=True),
        default=60.0,
        help="seconds to wait (default: %(default)s)",
    )
    pusher.add_argument(
        "--survey-seconds",
        type=finite_float(0.0, MAX_SURVEY_SECONDS, low_inclusive=True, high_inclusive=True),
        default=1.5,
        help="seconds to read the doors' state (default: %(default)s)",
    )
    pusher.add_argument("--json", action="store_true", help="print JSON")
    pusher.set_defaults(func=recognition.cmd_gallery_push)
    gallery.set_defaults(func=recognition.cmd_gallery)

    keys = commands.add_parser("keys", help="signing keys for gallery pushes")
    key_actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    generate = key_actions.add_parser("generate", help="write a new signing key")
    generate.add_argument("--out", required=True, help="key file (written with mode 0600)")
    generate.add_argument(
        "--type",
        choices=["hmac", "ed25519"],
        default="hmac",
        help="hmac: shared secret (default); ed25519: private key + <out>.pub for the doors",
    )
    generate.add_argument(
        "--id", default="k1", help="key id the pushes will name (default: %(default)s)"
    )
    generate.add_argument("--force", action="store_true", help="replace an existing file")
    generate.add_argument("--json", action="store_true", help="print JSON")
    keys.set_defaults(func=recognition.cmd_keys)

    audit = commands.add_parser("audit", help="check the audit trail")
    audit_actions = audit.add_subparsers(dest="action", metavar="ACTION", required=True)
    checker = audit_actions.add_parser("verify", help="check the hash chain (exit 1 if broken)")
    where_log = checker.add_mutually_exclusive_group(required=True)
    where_log.add_argument("--config", help="daemon configuration (finds the log from it)")
    where_log.add_argument("--log", help="the audit log file itself (audit.log)")
    checker.add_argument(
        "--head",
        help="SEQ:HASH (or the JSON) retained on <base>/audit/head: also catches a cut-off tail",
    )
    checker.add_argument("--json", action="store_true", help="print JSON")
    audit.set_defaults(func=cmd_audit)

    from edgeface.door import relay_lock

    relay = commands.add_parser("relay", help="the door relay")
    relay_actions = relay.add_subparsers(dest="action", metavar="ACTION", required=True)
    locker = relay_actions.add_parser(
        "lock",
        help="drive the relay pin the daemon last claimed locked (what systemd runs after "
        "every stop; nothing else is loaded)",
    )
    relay_lock.add_arguments(locker)
    relay.set_defaults(func=relay_lock.cmd_relay_lock)

    run = commands.add_parser("run", help="run the door daemon")
    run.add_argument("--config", required=True, help="YAML configuration file")
    run.add_argument("--source", help="override camera.source (a file, folder, URL or index)")
    run.add_argument("--pin-factory", help="override relay.pin_factory (e.g. mock)")
    run.add_argument("--print-events", action="store_true", help="print events as JSON lines")
    run.set_defaults(func=cmd_run)

    demo = commands.add_parser("demo", help="run the daemon on a demo clip (no camera or Pi)")
    demo.add_argument("--broker", help="also publish to this MQTT broker, HOST:PORT")
    demo.set_defaults(func=cmd_demo)

    doctor = commands.add_parser("doctor", help="check everything the daemon needs")
    doctor.add_argument("--config", required=True, help="YAML configuration file")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.set_defaults(func=cmd_doctor)

    models = commands.add_parser("models", help="list the shipped models and verify them")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=cmd_models)

    bench = commands.add_parser(
        "bench", help="measure speed on this machine (models, pipeline, peers)"
    )
    bench.add_argument("--input", help="video, image or folder of frames (default: astronaut)")
    bench.add_argument(
        "--frames",
        type=int_at_least(0),
        default=60,
        help="frames per pipeline (0: skip; default: %(default)s)",
    )
    bench.add_argument(
        "--min-face",
        type=int_at_least(MIN_FACE_PIXELS),
        default=40,
        help="smallest face in pixels (default: %(default)s)",
    )
    bench.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="TFLite threads in pipelines (default: cores, at most 4)",
    )
    bench.add_argument("--peers", action="store_true", help="also run dlib and the mtcnn package")
    bench.add_argument("--plot", metavar="OUT.png", help="draw per-stage latency")
    bench.add_argument("--skip-models", action="store_true", help="no per-model table")
    bench.add_argument(
        "--model-threads",
        type=thread_counts,
        default=[1, 2],
        help="thread counts for the model table (default: 1,2)",
    )
    bench.add_argument(
        "--repeat",
        type=positive_int,
        default=30,
        help="timed runs per model (default: %(default)s)",
    )
    bench.add_argument(
        "--door", action="store_true", help="also the daemon: unlock latency, CPU, RSS"
    )
    bench.add_argument(
        "--door-trials",
        type=positive_int,
        default=5,
        help="unlock runs for --door (default: %(default)s)",
    )
    bench.add_argument(
        "--door-seconds",
        type=finite_float(0.0, 3600.0, high_inclusive=True),
        default=20.0,
        help="steady-load seconds for --door (default: %(default)s)",
    )
    bench.add_argument("--json", action="store_true", help="print JSON")
    bench.set_defaults(func=cmd_bench)

    evaluate = commands.add_parser("eval", help="accuracy protocols")
    protocols = evaluate.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)
    lfw = protocols.add_parser("lfw", help="LFW View-2 10-fold verification")
    lfw.add_argument("--data", required=True, help="folder with pairs.txt and images/")
    lfw.add_argument(
        "--pipelines",
        default="edgeface",
        help="comma list: edgeface (int8, fp32, int8+flip), edgeface-grid (+ the grid "
        "enrolment template, 18 embeddings per image), dlib (needs edgeface[bench]); "
        "default: %(default)s; 1.5-4 minutes per pipeline on a 2-core x86",
    )
    lfw.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="TFLite threads (default: cores, at most 4)",
    )
    lfw.add_argument(
        "--far",
        type=finite_float(0.0, 1.0),
        default=1e-3,
        help="false-accept rate for TAR (default: %(default)s)",
    )
    lfw.add_argument(
        "--cache",
        default=None,
        help="folder to keep embeddings in between runs; an image's are reused only while the "
        "data folder, the file and the models are the same",
    )
    lfw.add_argument("--quiet", action="store_true", help="no progress bar")
    lfw.add_argument("--json", action="store_true", help="print JSON")
    lfw.set_defaults(func=cmd_eval_lfw)
    openset = protocols.add_parser(
        "identify", parents=[engine], help="open-set identification on folders of identities"
    )
    openset.add_argument("--data", nargs="+", required=True, help="folders of identities")
    openset.add_argument(
        "--enrol",
        type=positive_int,
        default=1,
        help="images enrolled per identity (default: %(default)s)",
    )
    openset.add_argument(
        "--unknown",
        type=finite_float(0.0, 1.0, low_inclusive=True),
        default=0.3,
        help="fraction of identities never enrolled, their images impostor probes "
        "(0 <= f < 1; default: %(default)s)",
    )
    openset.add_argument(
        "--trials",
        type=positive_int,
        default=5,
        help="random splits to average (default: %(default)s)",
    )
    openset.add_argument(
        "--seed", type=int_at_least(0), default=0, help="random splits' seed (default: %(default)s)"
    )
    openset.add_argument(
        "--threshold",
        type=threshold_type,
        default=None,
        help=f"accept distance (default: the matcher's, {recognition.DEFAULTS['threshold']})",
    )
    openset.add_argument("--flip", action="store_true", help="flip-average embeddings")
    openset.add_argument(
        "--enrol-augment",
        choices=("none", "flip", "grid"),  # = edgeface.vision.augment.AUGMENTATIONS
        default="grid",
        help="how enrolled images become templates, as in 'enroll --augment' "
        "(default: %(default)s)",
    )
    openset.add_argument(
        "--fuse",
        type=positive_int,
        default=1,
        help="probe with the mean embedding of this many images of a person, as the "
        "daemon's recognition.fusion_frames fuses a face's frames (default: %(default)s)",
    )
    openset.set_defaults(func=cmd_eval_identify)
    return parser


def open_standard_streams() -> None:
    """Give a closed stdin, stdout or stderr (``edgeface run 2>&-``, a careless supervisor)
    /dev/null. Otherwise the next file opened takes the number: the audit log as fd 2 would
    receive every C library's complaint, and stderr caught around image decoding would be
    that file."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def main(argv: Sequence[str] | None = None) -> int:
    open_standard_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except EdgefaceError as exc:
        print(f"edgeface: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgeface: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
