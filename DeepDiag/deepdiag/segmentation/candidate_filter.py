"""False-positive reduction: a second network looks at each predicted nodule component and
keeps it only if it finds a nodule there.

The U-Net judges every voxel from its surroundings; at small sizes a blunt vessel end or a
vessel crossing and a 4 mm nodule differ only in their 3D shape over a few millimetres, and a
threshold low enough to keep the small nodules keeps those vessel pieces too. As in the
LUNA16 systems (candidate detection, then false-positive reduction), a small 3D classifier,
trained on the segmentation model's own false positives, decides per component. The
segmentation card names it: ``postprocessing.candidate_filter = {"model": id@version,
"min_probability": p}``. With ``"spot_min_probability": q`` the filter also judges the bright
round spots the U-Net did not mark at all (:mod:`.bright_spots`) and adds those it scores at
least ``q`` as nodules, on scans whose slices are at most ``"spot_max_slice_mm"`` thick (on
thicker slices, interpolated vessel crossings look like small spheres). The spots are searched
the way the filter's own card says (``input.spot_search``): the way its training spots were.

``"model"`` may also name several filters, ``["lung-nodules-fpr@9", "lung-nodules-fpr@11"]``, with
``"combine": "min"`` (a candidate is as likely a nodule as the least convinced filter says: each
must accept it) or ``"mean"``. Filters trained on different data err on different real structures
(on the held-out real CT one keeps a vessel piece that the other rejects, the other three spots
that the first rejects), so requiring both to agree drops what either one alone lets through;
MONAI has no ensemble rule for a list of patch classifiers' scores.
``"spot_combine"`` (default: as ``"combine"``) may differ for the spots, ``"first"`` leaving them to
the first filter alone: spots already need its stricter ``spot_min_probability``.

With ``"small_min_volume_mm3": v`` and ``"small_min_probability": s`` the U-Net's components
smaller than the card's ``min_nodule_volume_mm3`` but of at least ``v`` are not dropped as specks:
they stay when the filters score them at least ``s``. The U-Net draws a real 3-6 mm nodule on a
real scan as a few voxels (5-25 mm³ on the held-out real CT), below the volume rule that keeps
its slivers on vessels out; the stricter score takes the place of the volume there.

A filter whose card sets ``input.centre_zoom`` (2) also sees the middle of its box magnified
that many times, as a second channel: its first layer halves the resolution, and a 3 mm nodule
is 3 voxels on the model grid, so without it the filter judges small nodules from 1-2 voxels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..errors import DeepDiagError
from ..models.card import ModelCard
from ..models.store import LoadedModel
from ..precision import reduced_precision
from .bright_spots import Spot, SpotSearch, bright_spots
from .postprocess import component_centres, most_likely_class

NODULE_CLASS = 1  # classes of a candidate filter: 0 something else, 1 nodule
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
_BATCH = 32
SPOT_CLEARANCE_VOXELS = 2  # a spot this close to a kept component is that component's business


@dataclass
class CandidateFilter:
    model: LoadedModel
    min_probability: float
    spot_min_probability: float | None = None
    spot_max_slice_mm: float = float("inf")
    #: how a detector finding's score comes out of the filter: "detector" keeps the detector's
    #: score (the filter only drops findings); "geometric_mean" ranks by both stages and "filter"
    #: by the filter alone, as the LUNA16 two-stage systems rank by their false-positive reduction stage
    score: str = "detector"
    #: further filters judging every candidate too, and how their probabilities combine with this one's
    others: tuple[LoadedModel, ...] = ()
    combine: str = "min"
    spot_combine: str = "min"
    #: the card's min_nodule_volume_mm3: components under it need small_min_probability (and
    #: small_min_volume_mm3; None: they were dropped before the filter and never reach it)
    small_below_mm3: float = 0.0
    small_min_volume_mm3: float | None = None
    small_min_probability: float = 1.0

    def nodule_probabilities(
        self,
        image: np.ndarray,
        centres,
        device: torch.device,
        combine: str | None = None,
        needed: float | np.ndarray | None = None,
    ) -> np.ndarray:
        """The nodule probability for a patch around each centre, the filters' combined by
        ``combine`` (default: the card's ``combine``; ``"first"``: the first filter alone).

        ``needed`` (a score per centre, or one for all), under ``"min"``: the further filters are
        asked only about the centres the first scores at least that; the others are rejected
        whatever they say, and keep the first's score, which is already under ``needed``. Most
        candidates on a real scan are vessels the first filter rejects: this halves the cost."""
        combine = combine or self.combine
        scores = nodule_probabilities(self.model, image, centres, device)
        if combine == "first" or not self.others:
            return scores
        asked = np.ones(len(scores), bool) if needed is None or combine != "min" else scores >= needed
        centres_asked = [c for c, ask in zip(centres, asked) if ask]
        others = np.stack([nodule_probabilities(m, image, centres_asked, device) for m in self.others])
        all_scores = np.concatenate([scores[None, asked], others])
        scores[asked] = all_scores.mean(axis=0) if combine == "mean" else all_scores.min(axis=0)
        return scores

    def searches_spots(self, slice_mm: float) -> bool:
        return self.spot_min_probability is not None and slice_mm <= self.spot_max_slice_mm

    def keep_nodules(self, probabilities: np.ndarray, image: np.ndarray, device: torch.device) -> np.ndarray:
        """Move the probability of nodule components the filter rejects to background; ``image``
        is the normalized model-grid crop the probabilities were predicted on. Components under
        ``small_below_mm3`` need ``small_min_probability``, the others ``min_probability``."""
        components, count = ndimage.label(most_likely_class(probabilities) == 2, structure=_CONNECTIVITY)
        if not count:
            return probabilities
        needed = np.where(self._volumes_mm3(components, count) < self.small_below_mm3, self.small_min_probability, 0.0)
        needed = np.maximum(needed, self.min_probability)
        scores = self.nodule_probabilities(image, component_centres(components, count), device, needed=needed)
        rejected = np.concatenate([[False], scores < needed])[components]
        cleaned = probabilities.copy()
        cleaned[0][rejected] += cleaned[2][rejected]
        cleaned[2][rejected] = 0.0
        return cleaned

    def small_nodules(self, probabilities: np.ndarray) -> np.ndarray:
        """Where the nodule components under ``small_below_mm3`` lie (after :meth:`keep_nodules`:
        those the filters accepted at ``small_min_probability``)."""
        components, count = ndimage.label(most_likely_class(probabilities) == 2, structure=_CONNECTIVITY)
        small = np.concatenate([[False], self._volumes_mm3(components, count) < self.small_below_mm3])
        return small[components]

    def _volumes_mm3(self, components: np.ndarray, count: int) -> np.ndarray:
        voxel_mm3 = float(np.prod(self.model.card.input.get("spacing_mm", (1.0, 1.0, 1.0))))  # the model grid's
        return np.bincount(components.ravel(), minlength=count + 1)[1:] * voxel_mm3

    def add_spot_nodules(
        self,
        probabilities: np.ndarray,
        lungs: np.ndarray,
        image: np.ndarray,
        spacing_kji,
        device: torch.device,
        searched_over: np.ndarray | None = None,
    ) -> np.ndarray:
        """Mark as nodule the bright spots in ``lungs`` (nodules included), away from every nodule
        component still in ``probabilities`` but those of ``searched_over``, that the filter scores
        at least ``spot_min_probability``; returns a copy. A small component (``searched_over``)
        is often the core of a larger spot: the spot then marks the whole nodule."""
        nodules = most_likely_class(probabilities) == 2
        if searched_over is not None:
            nodules &= ~searched_over
        excluded = ndimage.binary_dilation(nodules, iterations=SPOT_CLEARANCE_VOXELS)
        spots = bright_spots(image, lungs, spacing_kji, excluded, SpotSearch.from_card(self.model.card))
        scores = self.nodule_probabilities(
            image, [s.centre for s in spots], device, self.spot_combine, needed=self.spot_min_probability
        )
        accepted = scores >= self.spot_min_probability
        return mark_spots(probabilities, [s for s, keep in zip(spots, accepted) if keep], scores[accepted])


def mark_spots(probabilities: np.ndarray, spots: list[Spot], scores) -> np.ndarray:
    """The spots as nodule, with their score as the nodule probability (the rest goes to lungs:
    a spot lies in the lung); returns a copy."""
    marked = probabilities.copy()
    for spot, score in zip(spots, scores):
        nodule = np.maximum(marked[2][spot.voxels], score)
        marked[2][spot.voxels] = nodule
        marked[1][spot.voxels] = 1.0 - nodule
        marked[0][spot.voxels] = 0.0
    return marked


def load_candidate_filter(card: ModelCard, device: torch.device) -> CandidateFilter | None:
    """The filter(s) a segmentation or detection card's post-processing names, or None when it
    names none. Each must see the image as that model does (same grid spacing, same intensity
    window), and several must search spots alike."""
    named = card.postprocessing.get("candidate_filter")
    if not named:
        return None
    from ..models import find_model
    from ..models.store import load_model

    models = [
        load_model(find_model(model_id, "candidate-classification", model_id), device)
        for model_id in named_filters(card.postprocessing, card.full_id)
    ]
    spot_min_probability = named.get("spot_min_probability")
    small_min_volume = named.get("small_min_volume_mm3")
    combine = _rule(named, "combine", _COMBINE_RULES, "min", models[0].folder)
    spot_combine = _rule(named, "spot_combine", (*_COMBINE_RULES, "first"), combine, models[0].folder)
    spots_combined = spot_min_probability is not None and spot_combine != "first"
    for model in models:
        if model.card.spacing_mm != card.spacing_mm or model.card.input.get("intensity") != card.input.get("intensity"):
            raise DeepDiagError(
                f"the candidate filter {model.card.full_id} does not see the image as {card.full_id} "
                "does (grid spacing or intensity window differ)",
                model.folder,
            )
        if spots_combined and SpotSearch.from_card(model.card) != SpotSearch.from_card(models[0].card):
            raise DeepDiagError(
                f"the candidate filters {models[0].card.full_id} and {model.card.full_id} search spots differently "
                "(input.spot_search); filters judging the same spots must have been trained on the same kind",
                model.folder,
            )
    return CandidateFilter(
        models[0],
        float(named.get("min_probability", 0.5)),
        None if spot_min_probability is None else float(spot_min_probability),
        float(named.get("spot_max_slice_mm", float("inf"))),
        _rule(named, "score", _SCORE_RULES, "detector", models[0].folder),
        tuple(models[1:]),
        combine,
        spot_combine,
        float(card.postprocessing.get("min_nodule_volume_mm3", 0.0)) if small_min_volume is not None else 0.0,
        None if small_min_volume is None else float(small_min_volume),
        float(named.get("small_min_probability", 1.0)),
    )


def named_filters(postprocessing: dict, card_id: str = "the card") -> list[str]:
    """The candidate filters (id@version or folder) a card's post-processing names, in order."""
    named = postprocessing.get("candidate_filter")
    if not named:
        return []
    model = named.get("model")
    models = [model] if isinstance(model, str) else model
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
        raise DeepDiagError(
            f"{card_id}: postprocessing.candidate_filter.model must name a filter (id@version) or a list of them, "
            f"got {model!r}"
        )
    return list(models)


_SCORE_RULES = ("detector", "geometric_mean", "filter")
_COMBINE_RULES = ("min", "mean")


def _rule(named: dict, key: str, choices: tuple[str, ...], default: str, folder) -> str:
    rule = named.get(key, default)
    if rule not in choices:
        raise DeepDiagError(f"candidate_filter.{key} must be one of {', '.join(choices)}, got {rule!r}", folder)
    return rule


def patch_around(image: np.ndarray, centre_kji, size: tuple[int, int, int]) -> np.ndarray:
    """The ``size`` patch of ``image`` centred on the voxel nearest ``centre_kji``; air (0) outside."""
    start = np.round(np.asarray(centre_kji)).astype(int) - np.array(size) // 2
    patch = np.zeros(size, dtype=np.float32)
    source = tuple(slice(max(s, 0), min(s + p, n)) for s, p, n in zip(start, size, image.shape))
    target = tuple(slice(src.start - s, src.stop - s) for src, s in zip(source, start))
    patch[target] = image[source]
    return patch


def centre_zoom(card: ModelCard) -> int:
    """How many times the filter's second channel magnifies the middle of its box (1: no second channel)."""
    return int(card.input.get("centre_zoom", 1))


def with_zoomed_centre(patches: torch.Tensor, zoom: int) -> torch.Tensor:
    """``patches`` (N, 1, K, J, I) and, for ``zoom`` > 1, their middle 1/zoom magnified to the
    same size as a second channel (trilinear)."""
    if zoom == 1:
        return patches
    size = patches.shape[2:]
    middle = tuple(slice((n - n // zoom) // 2, (n - n // zoom) // 2 + n // zoom) for n in size)
    zoomed = F.interpolate(
        patches[(slice(None), slice(None), *middle)], size=size, mode="trilinear", align_corners=False
    )
    return torch.cat([patches, zoomed], dim=1)


def network_input(card: ModelCard):
    """What a filter's network takes, from a batch of its boxes (N, 1, K, J, I), as its card says:
    training and inference both go through here."""
    return functools.partial(with_zoomed_centre, zoom=centre_zoom(card))


def patches_around(image: np.ndarray, centres, size: tuple[int, int, int]) -> np.ndarray:
    """:func:`patch_around` for each centre, (N, *size) float32. The patches that lie wholly
    inside ``image`` come out of one indexing of its sliding-window view: one small copy per
    patch cost 0.4 ms each, and a real scan has thousands of spots."""
    starts = np.round(np.asarray(centres, dtype=float).reshape(-1, 3)).astype(int) - np.array(size) // 2
    inside = np.all((starts >= 0) & (starts + np.array(size) <= image.shape), axis=1)
    patches = np.empty((len(starts), *size), dtype=np.float32)
    if inside.any():  # else the image may be smaller than a patch, which has no sliding-window view
        patches[inside] = np.lib.stride_tricks.sliding_window_view(image, size)[tuple(starts[inside].T)]
    for index in np.flatnonzero(~inside):
        patches[index] = patch_around(image, centres[index], size)
    return patches


def nodule_probabilities(model: LoadedModel, image: np.ndarray, centres, device: torch.device) -> np.ndarray:
    """The filter's nodule probability for a patch around each centre; the network runs in the
    reduced precision of :mod:`deepdiag.precision` where the hardware has it (bfloat16 on a CPU
    with native support: ``lung-nodules-fpr@9`` scores the 2,080 spots of a real chest CT in
    1.2-1.3 s instead of 2.0-2.1 s, within 0.02 of float32's probabilities; docs/performance.md)."""
    size, to_input = tuple(model.card.patch_size), network_input(model.card)
    scores = []
    with torch.inference_mode(), reduced_precision(device):
        for start in range(0, len(centres), _BATCH):
            patches = patches_around(image, centres[start : start + _BATCH], size)
            batch = to_input(torch.from_numpy(patches[:, None]).to(device))
            scores.append(torch.softmax(model.network(batch).float(), dim=1)[:, NODULE_CLASS].cpu().numpy())
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)
