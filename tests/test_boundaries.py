"""Service boundaries, checked on the source tree with `ast` (no imports executed).

Rules (CONVENTIONS.md, "Boundaries"):
- a service package (every direct subpackage of `paymesh` except `kernel`) may import
  another service only through its `client` and `schemas` modules;
- a service never imports the composition root (`paymesh.platform`, `paymesh.cli`);
- `paymesh.kernel` imports no service at all, nor the composition root.

Every import statement counts, wherever it sits (function bodies, `if TYPE_CHECKING:`),
and relative imports are resolved first.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE_ROOT = Path(__file__).resolve().parents[1] / "src" / "paymesh"
KERNEL = "kernel"
COMPOSITION_ROOT = frozenset({"platform", "cli"})
PUBLIC_MODULES = frozenset({"client", "schemas"})


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    importer: str
    imported: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}: {self.reason}"


def service_packages(package_root: Path) -> set[str]:
    return {
        child.name
        for child in package_root.iterdir()
        if child.is_dir()
        and child.name.isidentifier()
        and child.name != KERNEL
        and any(child.rglob("*.py"))
    }


def module_name(package_root: Path, path: Path) -> str:
    parts = [package_root.name, *path.relative_to(package_root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, importer: str, is_package: bool) -> list[tuple[int, str]]:
    """Every dotted name an import statement brings in, as `module` or `module.attribute`."""
    found: list[tuple[int, str]] = []
    own_package = importer.split(".") if is_package else importer.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = own_package[: len(own_package) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                name = base if alias.name == "*" else f"{base}.{alias.name}"
                found.append((node.lineno, name))
    return found


def check_import(importer: str, imported: str, services: set[str], root_package: str) -> str | None:
    """Why `importer` may not import `imported`, or None when it may."""
    parts = imported.split(".")
    if parts[0] != root_package or len(parts) < 2:
        return None
    own = importer.split(".")[1] if "." in importer else None
    target = parts[1]
    if own == KERNEL:
        if target in services:
            return "the kernel must not depend on any service"
        if target in COMPOSITION_ROOT:
            return "the kernel must not depend on the composition root"
        return None
    if own not in services:
        return None
    if target in COMPOSITION_ROOT:
        return "a service must not depend on the composition root"
    if target in services and target != own:
        if len(parts) >= 3 and parts[2] in PUBLIC_MODULES:
            return None
        return f"only {target}.client and {target}.schemas are public to other services"
    return None


def find_violations(package_root: Path) -> list[Violation]:
    services = service_packages(package_root)
    violations: list[Violation] = []
    for path in sorted(package_root.rglob("*.py")):
        importer = module_name(package_root, path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for line, imported in imported_names(tree, importer, is_package):
            reason = check_import(importer, imported, services, package_root.name)
            if reason is not None:
                violations.append(Violation(path, line, importer, imported, reason))
    return violations


def write_tree(root: Path, files: dict[str, str]) -> Path:
    package_root = root / "paymesh"
    for relative, source in files.items():
        path = package_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    for directory in [package_root, *[p for p in package_root.rglob("*") if p.is_dir()]]:
        (directory / "__init__.py").touch()
    return package_root


class TestRealTree:
    def test_source_tree_keeps_service_boundaries(self) -> None:
        violations = find_violations(SOURCE_ROOT)
        assert not violations, "boundary violations:\n" + "\n".join(map(str, violations))

    def test_checker_sees_the_services_and_the_kernel(self) -> None:
        # Guards against a vacuous pass (wrong root, nothing scanned).
        assert "ledger" in service_packages(SOURCE_ROOT)
        assert KERNEL not in service_packages(SOURCE_ROOT)
        assert (SOURCE_ROOT / KERNEL / "runtime.py").is_file()


class TestChecker:
    def test_flags_import_of_another_services_models(self, tmp_path: Path) -> None:
        root = write_tree(
            tmp_path,
            {"ledger/models.py": "", "wallets/service.py": "from paymesh.ledger.models import X\n"},
        )
        [violation] = find_violations(root)
        assert violation.importer == "paymesh.wallets.service"
        assert violation.imported == "paymesh.ledger.models.X"
        assert violation.line == 1

    def test_allows_client_and_schemas(self, tmp_path: Path) -> None:
        root = write_tree(
            tmp_path,
            {
                "ledger/client.py": "",
                "ledger/schemas.py": "",
                "wallets/service.py": """
                    import paymesh.ledger.client
                    from paymesh.ledger.client import LedgerClient
                    from paymesh.ledger.schemas import Transfer
                    from paymesh.ledger import client, schemas
                    from paymesh.kernel.money import Money
                    from paymesh.wallets.models import Wallet
                    from .repository import WalletRepository
                """,
            },
        )
        assert find_violations(root) == []

    @pytest.mark.parametrize(
        "statement",
        [
            "import paymesh.ledger.service",
            "import paymesh.ledger",
            "from paymesh import ledger",
            "from paymesh.ledger import repository",
            "from paymesh.ledger import LedgerService",
            "from ..ledger.models import Account",
            "from .. import ledger",
            "from paymesh.platform import Platform",
        ],
    )
    def test_flags_every_spelling_of_a_private_import(self, tmp_path: Path, statement: str) -> None:
        root = write_tree(tmp_path, {"ledger/models.py": "", "wallets/service.py": statement})
        assert len(find_violations(root)) == 1, statement

    def test_flags_imports_hidden_in_functions_and_type_checking(self, tmp_path: Path) -> None:
        root = write_tree(
            tmp_path,
            {
                "ledger/models.py": "",
                "wallets/service.py": """
                    from typing import TYPE_CHECKING
                    if TYPE_CHECKING:
                        from paymesh.ledger.models import Account

                    def load() -> None:
                        from paymesh.ledger.repository import accounts
                """,
            },
        )
        assert [v.line for v in find_violations(root)] == [4, 7]

    def test_flags_kernel_importing_a_service(self, tmp_path: Path) -> None:
        root = write_tree(
            tmp_path,
            {
                "ledger/client.py": "",
                "kernel/runtime.py": """
                    from paymesh import __version__
                    from paymesh.kernel.db import Database
                    from paymesh.ledger.client import LedgerClient
                """,
            },
        )
        [violation] = find_violations(root)
        assert violation.importer == "paymesh.kernel.runtime"
        assert "kernel" in violation.reason

    def test_composition_root_may_import_anything(self, tmp_path: Path) -> None:
        root = write_tree(
            tmp_path,
            {"ledger/models.py": "", "platform.py": "from paymesh.ledger.models import X\n"},
        )
        assert find_violations(root) == []
