"""Fail when a module of one app uses a `_private` name of another app.

Apps are the Django apps (o2o, inventory, inventory.staff, loyalty, orders, orders.pos, orders.returns): what one
offers another goes through public names (inventory.services.lock_stock_rows, loyalty.services.lock_members_for_phones,
...). Checked: `from other.module import _name`, and `alias._name` where `alias` names a module of another app
(`from inventory import services as stock` then `stock._apply`, or `import inventory.services`). Tests, benches,
fixtures and migrations are not app code and are not checked.

Usage: python .ci/check_private_imports.py [ROOT]   (exit 1 and one line per use when any is found)
"""

import ast
import sys
from pathlib import Path

APPS = ("orders.pos", "orders.returns", "inventory.staff", "orders", "inventory", "loyalty", "o2o")
SKIP_PARTS = {"migrations", "tests", "bench", "fixtures", ".venv", ".tools"}


def app_of(module: str) -> str | None:
    for app in APPS:  # longest first
        if module == app or module.startswith(app + "."):
            return app
    return None


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_module(root: Path, dotted: str) -> bool:
    base = root.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def violations(root: Path, path: Path) -> list[str]:
    here = module_name(root, path)
    mine = app_of(here)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    aliases: dict[str, str] = {}  # local name -> module of another app
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            theirs = app_of(node.module)
            if theirs is None or theirs == mine:
                continue
            for alias in node.names:
                if is_private(alias.name):
                    found.append(f"{path}:{node.lineno}: {here} imports {node.module}.{alias.name} ({theirs} is another app)")
                elif is_module(root, f"{node.module}.{alias.name}"):
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                theirs = app_of(alias.name)
                if theirs is not None and theirs != mine:
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            base = node.value
            dotted = []
            while isinstance(base, ast.Attribute):
                dotted.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                target = ".".join([aliases[base.id], *reversed(dotted)])
                if app_of(target) not in (None, mine):
                    found.append(f"{path}:{node.lineno}: {here} uses {target}.{node.attr} (another app's private name)")
    return found


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    found = []
    for top in ("o2o", "inventory", "loyalty", "orders"):
        for path in sorted((root / top).rglob("*.py")):
            if SKIP_PARTS & set(path.relative_to(root).parts):
                continue
            found += violations(root, path)
    for line in found:
        print(line)
    print(f"private imports across apps: {len(found)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
