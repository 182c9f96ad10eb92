"""Files of a phantom case, laid out by kind (as nnU-Net and MONAI datasets are):

``images/<case>.nrrd`` CT (int16 HU) · ``labels/<case>.nrrd`` 1 lungs, 2 nodules ·
``instances/<case>.nrrd`` one id per nodule · ``truth/<case>.json`` · ``previews/<case>.png``
"""

from __future__ import annotations

import json
from pathlib import Path

from ..dicom.ct_series import SeriesIdentity, write_ct_series
from ..files import atomic_output
from ..image_io import write_volume
from .case import PhantomCase
from .preview import write_preview


def write_case(case: PhantomCase, output_dir: str | Path, preview: bool = False, dicom: bool = False) -> dict[str, str]:
    """Write a case's image, labels, instances and truth (and a preview PNG, and the image as a
    DICOM CT series ``dicom/<case>/`` of its own study and patient); returns the paths by kind."""
    output_dir = Path(output_dir)
    paths = {
        "image": output_dir / "images" / f"{case.name}.nrrd",
        "labels": output_dir / "labels" / f"{case.name}.nrrd",
        "instances": output_dir / "instances" / f"{case.name}.nrrd",
        "truth": output_dir / "truth" / f"{case.name}.json",
    }
    write_volume(case.ct, paths["image"])
    write_volume(case.labels, paths["labels"])
    write_volume(case.instances, paths["instances"])
    with atomic_output(paths["truth"]) as temporary:
        temporary.write_text(json.dumps(case.truth, indent=2))
    if dicom:
        paths["dicom"] = output_dir / "dicom" / case.name
        write_ct_series(case.ct, paths["dicom"], SeriesIdentity(patient_id=case.name))
    if preview:
        paths["preview"] = write_preview(case, output_dir / "previews" / f"{case.name}.png")
    return {kind: str(path) for kind, path in paths.items()}
