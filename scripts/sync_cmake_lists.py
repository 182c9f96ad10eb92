"""Rewrite the file lists of each module's CMakeLists.txt from what the module folder holds.

Slicer installs only the files a module's CMake lists; run this after adding or removing a
Python file, .ui, icon or built-in model (the test suite checks the lists are complete).

    python scripts/sync_cmake_lists.py
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("DeepDiag", "DeepDiagSegment", "DeepDiagDetect")
RESOURCE_PATTERNS = (
    "Resources/**/*.png",
    "Resources/**/*.ui",
    "deepdiag/requirements.txt",
    "deepdiag/models/builtin/*/*",
)


def listed(folder: Path, patterns) -> list[str]:
    return sorted(
        {
            path.relative_to(folder).as_posix()
            for pattern in patterns
            for path in folder.glob(pattern)
            if path.is_file() and "__pycache__" not in path.parts
        }
    )


def replace_block(cmake: str, variable: str, files: list[str]) -> str:
    block = f"set({variable}\n" + "".join(f"  {name}\n" for name in files) + "  )"
    return re.sub(rf"set\({variable}\n.*?\n  \)", lambda _: block, cmake, flags=re.DOTALL)


def main() -> None:
    for module in MODULES:
        folder = ROOT / module
        cmake_path = folder / "CMakeLists.txt"
        cmake = cmake_path.read_text()
        cmake = replace_block(cmake, "MODULE_PYTHON_SCRIPTS", listed(folder, ("**/*.py",)))
        cmake = replace_block(cmake, "MODULE_PYTHON_RESOURCES", listed(folder, RESOURCE_PATTERNS))
        cmake_path.write_text(cmake)


if __name__ == "__main__":
    main()
