"""Which bundle configs volseg runs without the user's consent (``--trust-bundle``).

A MONAI bundle is code: ``$`` strings are Python ``eval``-ed with builtins, ``$import`` imports
any module, and ``_target_`` instantiates any importable object. volseg therefore checks the
config items it is about to run (those reachable from the ids it resolves, following ``@``
references, also inside ``$`` expressions, and ``%`` macros) before anything is evaluated, and
runs only a safe subset unless the user trusts the bundle:

* literals, ``@`` references, ``%`` macros, ``$`` expressions made of arithmetic, comparisons,
  boolean and conditional expressions, subscripts, f-strings, list/dict/set comprehensions and
  lambdas whose bodies are in this subset;
* calls of a few pure builtins (``sorted``, ``len``, ``range``, ``int``, ``zip``, ...), of
  ``os.path`` name helpers, ``glob.glob``, ``json.loads``/``dumps``, ``math``, numpy dtypes and
  array constructors, and of classes/functions defined in ``monai``, ``torch`` and ``volseg``
  outside :data:`DENIED` (loaders that unpickle, code compilers and runners, downloads, bundle
  runners); methods of config objects except :data:`DENIED_METHODS`; ``setattr`` on ``torch.backends``;
* ``$import`` of ``os``, ``glob``, ``numpy``, ``torch``, ``monai``, ``volseg``, ``math``, ``json``;
* ``_target_`` names that resolve (as ``ConfigParser`` resolves them) to such objects; the
  ``reader``/``writer`` strings MONAI's ``LoadImage``/``SaveImage`` import follow the same rule.

Everything else -- ``__import__``, ``eval``, ``open``, dunder attributes, ``subprocess``,
``os.system``, ``torch.load``, a bundle's own ``scripts.*`` -- raises a one-line ``ConfigError``
naming the config file, the item and the name. ``python -m monai.bundle run`` itself trusts
every bundle; see docs/security.md.
"""
from __future__ import annotations

import ast
import builtins
import importlib
import os
import re
from copy import deepcopy
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Union

from volseg.errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]

TRUST_FLAG = "--trust-bundle"
ALLOWED_IMPORTS = ("os", "glob", "numpy", "torch", "monai", "volseg", "math", "json")
TARGET_ROOTS = ("monai", "torch", "volseg")
#: dotted prefixes inside TARGET_ROOTS that load pickles, compile or run code, download, or run bundles
DENIED = (
    "torch.hub", "torch.load", "torch.save", "torch.serialization", "torch.jit", "torch.package",
    "torch.utils.cpp_extension", "torch.utils.model_zoo", "torch.utils.benchmark", "torch.ops", "torch.classes",
    "torch.library", "torch.fx", "torch.export", "torch._C", "torch.distributed.rpc", "torch.distributed.checkpoint",
    "torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launch", "torch.distributed.launcher",
    "torch.multiprocessing", "torch.utils.hipify", "torch.utils.show_pickle",
    "monai.bundle", "monai.apps.utils", "monai.apps.mmars", "monai.apps.auto3dseg", "monai.apps.nnunet",
    "monai.apps.datasets", "monai.apps.tcia", "monai.auto3dseg", "monai.fl", "monai.utils.module",
    "monai.utils.misc.run_cmd", "monai.data.torchscript_utils",
    "volseg.cli", "volseg.commands", "volseg.demo", "volseg.bundles", "volseg.training.run",
    "volseg.inference.predictor", "volseg.data.samples", "volseg._lazy",
)
#: methods of config objects that load, save or run things
DENIED_METHODS = frozenset({
    "system", "popen", "spawn", "exec", "load", "loads", "load_library", "tofile", "save",
    "dump", "write_text", "write_bytes", "unlink", "rmdir", "rmtree", "remove", "chmod", "chown", "symlink",
    "from_file",
})
SAFE_BUILTINS = frozenset({
    "sorted", "list", "len", "range", "int", "float", "str", "dict", "tuple", "zip", "min", "max", "sum", "abs",
    "round", "bool", "set", "frozenset", "enumerate", "any", "all", "reversed", "isinstance", "map", "filter",
})
_SAFE_FUNCTIONS = (
    "os.path.join", "os.path.basename", "os.path.dirname", "os.path.exists", "os.path.isfile", "os.path.isdir",
    "os.path.splitext", "os.path.split", "os.path.abspath", "os.path.normpath", "os.path.realpath",
    "os.path.expanduser", "os.path.relpath", "os.cpu_count", "glob.glob", "glob.iglob", "json.loads", "json.dumps",
    "numpy.array", "numpy.asarray", "numpy.zeros", "numpy.ones", "numpy.arange", "numpy.linspace", "numpy.prod",
    "numpy.dtype",
)
_PURE_MODULES = ("math",)  # every public name is allowed
_EXPR_NODES = (
    ast.Expression, ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.BinOp, ast.UnaryOp, ast.BoolOp,
    ast.Compare, ast.IfExp, ast.Subscript, ast.Slice, ast.JoinedStr, ast.FormattedValue, ast.Starred,
    ast.keyword, ast.Load, ast.Store, ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.expr_context,
)
_REF_RE = re.compile(r"@(?:\w*)(?:::\w*)*")


def check_config(parser_or_dict: Any, ids: Sequence[str], where: PathLike, trusted: bool = False) -> None:
    """Raise ``ConfigError`` if the items ``ids`` of a bundle config would run code outside the safe subset.

    ``parser_or_dict``: a ``monai.bundle.ConfigParser`` (not yet parsed or parsed: nothing is
    evaluated) or the config dict; ``ids``: the ids that will be resolved (``""`` for the whole
    config); ``#`` and ``::`` separators both work. Every ``@`` reference they make is followed,
    recursively, and every ``$import`` in the config is checked (MONAI runs them all on the first
    resolve). ``where``: the config file named in the message. ``trusted=True`` skips the check.
    """
    if trusted:
        return
    from monai.bundle import ConfigParser

    if isinstance(parser_or_dict, ConfigParser):
        config, locator = deepcopy(parser_or_dict.get()), parser_or_dict.locator
    else:
        config, locator = deepcopy(dict(parser_or_dict)), None
    parser = ConfigParser(config=config)
    if locator is not None:
        parser.locator = locator
    try:
        parser.resolve_macro_and_relative_ids()
    except Exception as exc:  # noqa: BLE001 - a macro that cannot be resolved will fail the run too
        raise ConfigError(f"cannot resolve the config's % macros ({' '.join(str(exc).split())[:160]})", where) from exc
    _Checker(parser, where).run(list(ids))


def check_bundle_files(files: Sequence[PathLike], ids: Sequence[str] = ("",), trusted: bool = False) -> None:
    """:func:`check_config` on config files merged as ``monai.bundle`` merges them (later files
    override earlier ones, ``a#b`` keys reach into them); the error names the file defining the item."""
    if trusted:
        return
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    try:
        parser.read_config([os.fspath(f) for f in files])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read bundle config ({' '.join(str(exc).split())[:160]})", files[0]) from exc
    try:
        check_config(parser, ids, files[0])
    except ConfigError as exc:
        item = getattr(exc, "item", "")
        for f in reversed(list(files)):
            try:
                keys = ConfigParser.load_config_file(f)
            except (OSError, ValueError):
                continue
            if any(item == k or item.startswith(f"{k}#") for k in (str(k).replace("::", "#") for k in keys)):
                raise ConfigError(exc.message, f) from None
        raise


def _denied(name: str) -> bool:
    return any(name == d or name.startswith(d + ".") for d in DENIED)


def _safe_objects() -> Dict[int, str]:
    """id(object) -> dotted name of the functions in ``_SAFE_FUNCTIONS``."""
    out: Dict[int, str] = {}
    for name in _SAFE_FUNCTIONS:
        mod, _, attr = name.rpartition(".")
        obj = getattr(importlib.import_module(mod), attr, None)
        if obj is not None:
            out[id(obj)] = name
    return out


class _Refuse(Exception):
    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class _Checker:
    """Walks the config items reachable from some ids; raises ConfigError on the first unsafe one."""

    def __init__(self, parser: Any, where: PathLike):
        import numpy
        import torch

        import monai

        self.parser, self.where = parser, where
        self.globals: Dict[str, Any] = {"monai": monai, "torch": torch, "np": numpy, "numpy": numpy}
        self.safe = _safe_objects()
        self.todo: List[str] = []
        self.seen: Set[str] = set()

    # -- driver
    def run(self, ids: List[str]) -> None:
        from monai.bundle.config_item import ConfigExpression

        config = self.parser.get()
        for sub_id, value in _strings(config, ""):
            if ConfigExpression.is_expression(value) and _is_import(value):
                self._guard(sub_id, lambda v=value: self._import(v[1:]))
        if isinstance(config, dict) and "imports" in config:
            ids = ["imports", *ids]
        self.todo = [_norm(i) for i in ids]
        while self.todo:
            item = self.todo.pop()
            if item in self.seen:
                continue
            self.seen.add(item)
            try:
                value = self.parser[item] if item else self.parser.get()
            except (KeyError, IndexError, ValueError, TypeError):
                continue  # a missing id fails the run with MONAI's own message
            self._walk(value, item)

    def _guard(self, item: str, fn: Any) -> None:
        try:
            fn()
        except _Refuse as r:
            shown = item.replace("::", "#") or "(whole config)"
            err = ConfigError(f"bundle item '{shown}' uses {r.what}, which volseg does not run by default; "
                              f"run it only if you trust this bundle: {TRUST_FLAG}", self.where)
            err.item = shown  # type: ignore[attr-defined]
            raise err from None

    def _walk(self, value: Any, item: str) -> None:
        if isinstance(value, dict):
            if "_target_" in value:
                self._guard(item, lambda: self._target(value["_target_"], "_target_"))
            for k, v in value.items():
                sub = f"{item}::{k}" if item else str(k)
                if k == "_target_":
                    continue
                if k in ("reader", "writer") and isinstance(v, str) and "." in v and v[:1] not in "$@%":
                    self._guard(sub, lambda v=v, k=k: self._target(v, f"{k} name"))
                if k == "weights_only" and v is False:
                    self._guard(sub, lambda: _raise("'weights_only': false (unpickling arbitrary objects)"))
                self._walk(v, sub)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                self._walk(v, f"{item}::{i}" if item else str(i))
        elif isinstance(value, str):
            if value.startswith("$"):
                if not _is_import(value):
                    self._guard(item, lambda: self._expression(value[1:]))
            elif value.startswith("@"):
                self.todo.append(_norm(value[1:]))

    # -- imports and names
    def _import(self, src: str) -> None:
        node = ast.parse(src).body[0]
        if isinstance(node, ast.Import):
            for alias in node.names:
                self._module(alias.name, f"'import {alias.name}'")
                try:
                    self.globals[alias.asname or alias.name] = importlib.import_module(alias.name)
                except ImportError:
                    continue  # fails the run the same way; nothing to check
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            self._module(mod, f"'from {mod} import ...'")
            for alias in node.names:
                obj = self._resolve(f"{mod}.{alias.name}", f"'from {mod} import {alias.name}'")
                self._object(obj, f"{mod}.{alias.name}")
                self.globals[alias.asname or alias.name] = obj

    def _module(self, name: str, what: str) -> None:
        parts = name.split(".")
        if parts[0] not in ALLOWED_IMPORTS or _denied(name) or any(p.startswith("_") for p in parts):
            raise _Refuse(what)

    def _resolve(self, dotted: str, what: str) -> Any:
        """Import/getattr a dotted name under an allowed root (importing those is safe)."""
        parts = dotted.split(".")
        if any(p.startswith("_") for p in parts):
            raise _Refuse(what)
        obj = importlib.import_module(parts[0])
        for i, p in enumerate(parts[1:], start=1):
            if hasattr(obj, p):
                obj = getattr(obj, p)
                continue
            try:
                obj = importlib.import_module(".".join(parts[: i + 1]))
            except ImportError:
                raise _Refuse(f"'{dotted}' (not found)") from None
        return obj

    def _target(self, target: Any, what: str) -> None:
        if not isinstance(target, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.\w+)*", target):
            raise _Refuse(f"{what} {target!r} (not a plain class or function name)")
        name = target
        if "." not in target:
            mods = self.parser.locator.get_component_module_name(target)
            if not mods:
                raise _Refuse(f"{what} '{target}' (not a MONAI component)")
            name = f"{mods[0] if isinstance(mods, list) else mods}.{target}"
        if name.split(".")[0] not in TARGET_ROOTS or _denied(name):
            raise _Refuse(f"{what} '{target}'")
        self._object(self._resolve(name, f"{what} '{target}'"), target)

    def _object(self, obj: Any, written: str) -> None:
        """Is ``obj`` (named ``written`` in the config) something a bundle may use as a value or call?"""
        import numpy
        import torch

        data = (bool, int, float, str, bytes, type(None), torch.dtype, numpy.dtype)
        if id(obj) in self.safe or isinstance(obj, data):
            return
        if isinstance(obj, type) and issubclass(obj, numpy.generic):
            return
        if _is_module(obj):
            if getattr(obj, "__name__", "") in _PURE_MODULES:
                return
            raise _Refuse(f"'{written}' (a module used as a value)")
        if written.rpartition(".")[2] in DENIED_METHODS:
            raise _Refuse(f"'{written}'")
        mod = getattr(obj, "__module__", None) or ""
        canonical = f"{mod}.{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}"
        if mod in _PURE_MODULES:
            return
        if mod.split(".")[0] in TARGET_ROOTS and not _denied(canonical) and not _denied(written):
            return
        raise _Refuse(f"'{written}'")

    # -- expressions
    def _expression(self, src: str) -> None:
        from monai.bundle.reference_resolver import ReferenceResolver

        text = ReferenceResolver.normalize_id(src)
        refs: Dict[str, str] = {}
        for k, ref in enumerate(sorted(set(_REF_RE.findall(text)), key=len, reverse=True)):
            placeholder = f"volsegref{k}x"
            refs[placeholder] = ref[1:]
            text = text.replace(ref, placeholder)
            self.todo.append(_norm(ref[1:]))
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError:
            raise _Refuse(f"the expression {src[:60]!r} (cannot be parsed)") from None
        self._node(tree, set(refs))

    def _node(self, node: ast.AST, local: Set[str]) -> None:
        if isinstance(node, ast.Name):
            self._name(node.id, local)
        elif isinstance(node, ast.Attribute):
            self._attribute(node, local)
        elif isinstance(node, ast.Call):
            self._call(node, local)
        elif isinstance(node, ast.Lambda):
            args = node.args
            names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
            names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
            for d in args.defaults + [d for d in args.kw_defaults if d is not None]:
                self._node(d, local)
            self._node(node.body, local | names)
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = set(local)
            for gen in node.generators:
                self._node(gen.iter, inner)
                inner |= {n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
                for cond in gen.ifs:
                    self._node(cond, inner)
            for part in ((node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,)):
                self._node(part, inner)
        elif isinstance(node, _EXPR_NODES):
            for child in ast.iter_child_nodes(node):
                self._node(child, local)
        else:
            raise _Refuse(f"Python syntax {type(node).__name__}")

    def _name(self, name: str, local: Set[str]) -> None:
        if name in local:
            return
        if name.startswith("_"):
            raise _Refuse(f"'{name}'")
        if name in self.globals:
            self._object(self.globals[name], name)
        elif hasattr(builtins, name) and name not in SAFE_BUILTINS:
            raise _Refuse(f"'{name}'")
        # any other name is undefined when MONAI evaluates it: a NameError, not code

    def _dotted(self, node: ast.AST, local: Set[str]) -> Optional[str]:
        """``a.b.c`` when ``node`` is an attribute chain rooted at a global (not a local) name."""
        parts: List[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id not in local and node.id in self.globals:
            return ".".join([node.id, *reversed(parts)])
        return None

    def _static(self, dotted: str) -> Any:
        root, *rest = dotted.split(".")
        obj = self.globals[root]
        for i, p in enumerate(rest):
            if p.startswith("_"):
                raise _Refuse(f"'{dotted}'")
            if hasattr(obj, p):
                obj = getattr(obj, p)
            elif _is_module(obj):
                try:
                    obj = importlib.import_module(f"{obj.__name__}.{p}")
                except ImportError:
                    raise _Refuse(f"'{dotted}' (not found)") from None
            else:
                raise _Refuse(f"'{dotted}' (not found)")
            full = f"{getattr(self.globals[root], '__name__', root)}.{'.'.join(rest[: i + 1])}"
            if _denied(full) or _denied(f"{root}.{'.'.join(rest[: i + 1])}"):
                raise _Refuse(f"'{dotted}'")
        return obj

    def _attribute(self, node: ast.Attribute, local: Set[str]) -> None:
        dotted = self._dotted(node, local)
        if dotted is not None:
            self._object(self._static(dotted), dotted)
            return
        self._node(node.value, local)
        if node.attr.startswith("_"):
            raise _Refuse(f"the attribute '{node.attr}'")
        if node.attr in DENIED_METHODS:
            raise _Refuse(f"the method '.{node.attr}'")

    def _call(self, node: ast.Call, local: Set[str]) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "setattr" and func.id not in local:
            self._setattr(node, local)
            return
        self._node(func, local)
        for a in node.args:
            self._node(a, local)
        for kw in node.keywords:
            if kw.arg == "weights_only" and isinstance(kw.value, ast.Constant) and kw.value.value is False:
                raise _Refuse("weights_only=False (unpickling arbitrary objects)")
            if kw.arg in ("reader", "writer") and isinstance(kw.value, ast.Constant) and isinstance(
                    kw.value.value, str) and "." in kw.value.value:
                self._target(kw.value.value, f"{kw.arg} name")
            self._node(kw.value, local)

    def _setattr(self, node: ast.Call, local: Set[str]) -> None:
        args = node.args
        dotted = self._dotted(args[0], local) if args else None
        ok = (len(args) == 3 and not node.keywords and dotted is not None
              and getattr(self._static(dotted), "__name__", "").startswith("torch.backends")
              and isinstance(args[1], ast.Constant) and isinstance(args[1].value, str)
              and not args[1].value.startswith("_"))
        if not ok:
            raise _Refuse("'setattr' (allowed on torch.backends only)")
        self._node(args[2], local)


def _raise(what: str) -> None:
    raise _Refuse(what)


def _is_module(obj: Any) -> bool:
    import types

    return isinstance(obj, types.ModuleType)


def _is_import(value: str) -> bool:
    from monai.bundle.config_item import ConfigExpression

    try:
        return ConfigExpression.is_import_statement(value)
    except SyntaxError:
        return False


def _norm(ref: str) -> str:
    return ref.replace("#", "::")


def _strings(value: Any, item: str):
    """``(id, string)`` for every string in a config, depth first."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, f"{item}::{k}" if item else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _strings(v, f"{item}::{i}" if item else str(i))
    elif isinstance(value, str):
        yield item, value
