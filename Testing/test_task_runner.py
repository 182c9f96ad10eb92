"""The widgets' task runner (DeepDiagGUI) delivers every engine event, the last ones too.

Qt is not available outside Slicer; ``qt`` is stood in for by a timer the test ticks by hand
and plain widget objects, while the engine task and the MRML scene are real.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
from conftest import PROJECT_ROOT, load_volume_node


class _Timer:
    def __init__(self):
        self.running, self.callback = False, None

    def setInterval(self, milliseconds):
        pass

    def connect(self, signal, callback):
        self.callback = callback

    def start(self):
        self.running = True

    def stop(self):
        self.running = False


class _Widget:
    def __init__(self):
        self.value, self.text, self.visible = 0, "", True

    def connect(self, signal, callback):
        pass


@pytest.fixture
def runner_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "qt", types.SimpleNamespace(QTimer=_Timer))
    # the file alone: the package's other module needs Slicer's ScriptedLoadableModule
    spec = importlib.util.spec_from_file_location(
        "task_runner", PROJECT_ROOT / "DeepDiag" / "DeepDiagGUI" / "task_runner.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_events_queued_after_the_last_poll_still_reach_the_widget(tmp_path, scene, oblique_volume, runner_module):
    from deepdiag.image_io import write_volume
    from DeepDiagLib import EngineTask

    volume_node = load_volume_node(scene, write_volume(oblique_volume, tmp_path / "oblique.nrrd"))
    progress_bar, status = _Widget(), _Widget()
    runner = runner_module.EngineTaskRunner(progress_bar, status, _Widget(), lambda busy: None)
    events, results = [], []
    task = EngineTask("info", [volume_node])
    runner.start(task, lambda task, result: results.append(result), onEvent=events.append)
    task.process._process.wait()
    real_poll, calls = task.process.poll, []

    def late_poll():  # at the timer's tick the reader thread had not queued the last lines yet
        calls.append(1)
        return [] if len(calls) == 1 else real_poll()

    task.process.poll = late_poll
    runner._timer.callback()

    assert results and results[0]["size"] == [13, 11, 9]
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "result" and "progress" in kinds
    assert [e for e in events if e["event"] == "progress"][-1]["fraction"] == 1.0
    assert progress_bar.value == 100 and status.text == "Done."
    assert not runner.busy


def test_closing_the_scene_stops_a_run_and_adds_nothing_to_the_next_scene(
    tmp_path, scene, oblique_volume, runner_module
):
    from deepdiag.image_io import write_volume
    from DeepDiagLib import EngineTask

    volume_node = load_volume_node(scene, write_volume(oblique_volume, tmp_path / "oblique.nrrd"))
    status, busy = _Widget(), []
    runner = runner_module.EngineTaskRunner(_Widget(), status, _Widget(), busy.append, scene)
    delivered = []
    # a segmentation takes seconds to start: the scene closes while it runs
    task = EngineTask("segment", [volume_node], ["--device", "cpu"], writesFiles=True)
    runner.start(task, lambda task, result: delivered.append(scene.AddNewNodeByClass("vtkMRMLTableNode")))
    runner._timer.callback()
    assert runner.busy and task.process.running

    scene.Clear(0)  # File / Close Scene: StartCloseEvent, then the nodes go
    nodes_after_close = scene.GetNumberOfNodes()
    assert not runner.busy and busy[-1] is False
    assert not task.process.running and not task.workDir.exists()  # engine stopped, its files deleted
    assert status.text == "Cancelled: the scene was closed."
    assert not runner._timer.running
    assert delivered == [] and scene.GetNumberOfNodes() == nodes_after_close

    runner.close()  # the widget goes away: no observer of the scene is left behind
    assert scene.HasObserver(scene.StartCloseEvent) == 0
