"""Imports run one way: `basics` <- `families` <- `core` <- the stages and the rest; the bundled world measures the
editing methods of `imagic.baselines` without importing them. Read from the package's source, every import counted,
those inside functions too (a lazy import is still a dependency)."""
import ast
from pathlib import Path

import imagic

PKG = Path(imagic.__file__).parent


def imported(path:Path) -> set:
    "The imagic modules `path` imports, as absolute names."
    mod = '.'.join(path.relative_to(PKG.parent).with_suffix('').parts)
    pkg = mod.rsplit('.', 1)[0] if path.name != '__init__.py' else mod
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import): out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split('.')[:len(pkg.split('.')) - node.level + 1]
                name = '.'.join(base + ([node.module] if node.module else []))
            else: name = node.module
            out.add(name)
            out |= {f'{name}.{a.name}' for a in node.names}  # `from imagic import core`
    return {n for n in out if n == 'imagic' or n.startswith('imagic.')}


def upward(path, allowed) -> list:
    return sorted(n for n in imported(path) if not any(n == a or n.startswith(a + '.') for a in allowed) and n != 'imagic')


def test_basics_imports_no_other_module_of_imagic():
    assert imported(PKG / 'basics.py') == set()


def test_families_import_only_the_basics_and_each_other():
    for path in (PKG / 'families').glob('*.py'):
        assert not upward(path, ('imagic.basics', 'imagic.families')), (path.name, upward(path, ('imagic.basics', 'imagic.families')))


def test_core_imports_only_what_lies_below_it():
    assert not upward(PKG / 'core.py', ('imagic.basics', 'imagic.families'))


def test_the_world_does_not_reach_up_into_the_methods():
    for path in (PKG / 'world').glob('*.py'):
        bad = [n for n in imported(path) if n.split('.')[:2] in (['imagic', 'baselines'], ['imagic', 'bench'], ['imagic', 'cli'])]
        assert not bad, (path.name, bad)
