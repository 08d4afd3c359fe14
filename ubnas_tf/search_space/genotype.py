"""Genotypes: the discrete cells a search derives, in DARTS's [op, input] form, as JSON.

    {"space": "binary",
     "normal": [["bin_conv_3x3", 0], ["skip_connect", 1], ...],   # two edges per node
     "normal_concat": [2, 3, 4, 5],
     "reduce": [...], "reduce_concat": [2, 3, 4, 5]}

Node i (0-based) of a cell takes two inputs among the cell inputs 0, 1 and the earlier nodes
2..i+1. Files are parsed, never `eval`ed: JSON, or DARTS's own repr
(`Genotype(normal=[...], normal_concat=range(2, 6), ...)`, also as `NAME = Genotype(...)` as in
DARTS's genotypes.py) read with `ast` literals only.
"""
import ast
import dataclasses
import json
import pathlib
import re

from ubnas_tf.errors import UserError
from ubnas_tf.io_utils import atomic_write_text

CELL_FIELDS = ("normal", "reduce")


@dataclasses.dataclass(frozen=True)
class Genotype:
    normal: tuple
    normal_concat: tuple
    reduce: tuple
    reduce_concat: tuple
    space: str = "darts"

    @property
    def nodes(self) -> int:
        return len(self.normal) // 2

    def cell(self, reduction: bool) -> tuple:
        return self.reduce if reduction else self.normal

    def concat(self, reduction: bool) -> tuple:
        return self.reduce_concat if reduction else self.normal_concat

    def to_dict(self) -> dict:
        return {
            "space": self.space,
            "normal": [list(edge) for edge in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(edge) for edge in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    def to_json(self) -> str:
        """JSON with one edge per line, readable in a diff."""
        lines = ["{", f'  "space": {json.dumps(self.space)},']
        for field in CELL_FIELDS:
            edges = ",\n".join(f"    {json.dumps(list(edge))}" for edge in getattr(self, field))
            lines.append(f'  "{field}": [\n{edges}\n  ],')
            lines.append(f'  "{field}_concat": {json.dumps(list(self.concat(field == "reduce")))},')
        lines[-1] = lines[-1].rstrip(",")
        return "\n".join(lines + ["}"]) + "\n"

    def save(self, path) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, data, source="genotype") -> "Genotype":
        if not isinstance(data, dict):
            raise UserError(f"{source}: a genotype is a JSON object with keys normal, "
                            "normal_concat, reduce, reduce_concat, space")
        expected = {"normal", "normal_concat", "reduce", "reduce_concat", "space"}
        unknown = sorted(set(data) - expected)
        if unknown:
            raise UserError(f"{source}: unknown field(s) {unknown}: a genotype has {sorted(expected)}")
        missing = sorted(expected - set(data) - {"space"})
        if missing:
            raise UserError(f"{source}: missing field(s) {missing}")
        space = data.get("space", "darts")
        if not isinstance(space, str):
            raise UserError(f"{source}: field 'space' must be a search-space name")
        cells = {}
        for field in CELL_FIELDS:
            cells[field] = _parse_edges(data[field], f"{source}: field {field!r}")
            cells[f"{field}_concat"] = _parse_concat(
                data[f"{field}_concat"], len(cells[field]) // 2, f"{source}: field '{field}_concat'"
            )
        genotype = cls(space=space, **cells)
        genotype.validate(source)
        return genotype

    def validate(self, source="genotype") -> None:
        """Check op names against the search space (the structure is checked on parse)."""
        from ubnas_tf.search_space import get_space

        space = get_space(self.space)
        if len(self.normal) != len(self.reduce):
            raise UserError(f"{source}: normal and reduce cells must have the same number of nodes")
        for field in CELL_FIELDS:
            for position, (op, _) in enumerate(getattr(self, field)):
                if op == "none":
                    raise UserError(f"{source}: field {field!r} edge {position} is 'none': "
                                    "a derived genotype never keeps a zero op")
                try:
                    space.check_op(op)
                except UserError as error:
                    raise UserError(f"{source}: field {field!r} edge {position}: {error}") from None

    @classmethod
    def load(cls, path) -> "Genotype":
        """A genotype file: JSON (what tools/search.py writes) or a DARTS `Genotype(...)`."""
        path = pathlib.Path(path)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise UserError(f"genotype file {path} {what}: pass the genotype.json "
                            "written by tools/search.py (or one under configs/genotypes/)")
        text = path.read_text(encoding="utf-8", errors="replace")
        if _DARTS_REPR.search(text) and not text.lstrip().startswith("{"):
            return cls.from_darts_repr(text, source=f"genotype file {path}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"genotype file {path} is neither valid JSON (line {error.lineno}: "
                            f"{error.msg}) nor a DARTS Genotype(...): fix it or write it again "
                            "with tools/search.py") from None
        return cls.from_dict(data, source=f"genotype file {path}")

    @classmethod
    def from_darts_repr(cls, text: str, space: str | None = None,
                        source: str = "DARTS genotype") -> "Genotype":
        """Parse DARTS's `Genotype(normal=[...], normal_concat=range(2, 6), ...)` (or
        `NAME = Genotype(...)`) from literals only; anything else is a UserError.

        `space`: the search space of its op names; by default the float DARTS space when all
        its ops are DARTS ops, else the binary space."""
        call = _darts_call(text, source)
        values = {}
        for keyword in call.keywords:
            if keyword.arg is None or keyword.arg in values:
                raise UserError(f"{source}: Genotype(...) takes each field once, by name "
                                "(normal=..., normal_concat=..., reduce=..., reduce_concat=...)")
            values[keyword.arg] = _literal(keyword.value, f"{source}: field {keyword.arg!r}")
        written = values.pop("space", None)  # our own dataclass repr names its space
        space = space or (written if isinstance(written, str) else None) or _space_of(values)
        return cls.from_dict({**values, "space": space}, source=source)


_DARTS_REPR = re.compile(r"\bGenotype\s*\(")


def _darts_call(text: str, source: str) -> ast.Call:
    """The `Genotype(...)` call of `text`: an expression or one assignment `NAME = ...`."""
    expected = (f"{source}: not a DARTS Genotype(...) expression (give JSON or "
                "Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...]))")
    try:
        body = ast.parse(text.strip(), mode="exec").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise UserError(expected) from None
    if len(body) != 1 or not isinstance(body[0], (ast.Expr, ast.Assign)):
        raise UserError(expected)
    call = body[0].value
    if (not isinstance(call, ast.Call) or getattr(call.func, "id", None) != "Genotype"
            or call.args):
        raise UserError(expected)
    return call


def _literal(node, where):
    """A literal value, or `range(a, b[, c])` with literal bounds (DARTS's concat)."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "range":
        bounds = [_literal(arg, where) for arg in node.args]
        if node.keywords or not 1 <= len(bounds) <= 3 or not all(
                isinstance(bound, int) and not isinstance(bound, bool) for bound in bounds):
            raise UserError(f"{where}: range(...) needs one to three integers")
        return list(range(*bounds))
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise UserError(f"{where} is not a literal (only lists, tuples, strings, numbers and "
                        "range(a, b) are read, never evaluated)") from None


def _space_of(values: dict) -> str:
    """'darts' when every op name is a DARTS op, else 'binary' (validation names the bad op)."""
    from ubnas_tf.search_space import get_space

    darts = get_space("darts")
    ops = [edge[0] for field in CELL_FIELDS for edge in values.get(field) or ()
           if isinstance(edge, (list, tuple)) and edge]
    return "darts" if all(op in darts.ops for op in ops) else "binary"


def _parse_edges(value, where) -> tuple:
    if not isinstance(value, (list, tuple)) or not value or len(value) % 2:
        raise UserError(f"{where} must be a non-empty list of [op, input] pairs, two per node")
    edges = []
    for position, edge in enumerate(value):
        if (not isinstance(edge, (list, tuple)) or len(edge) != 2 or not isinstance(edge[0], str)
                or not isinstance(edge[1], int) or isinstance(edge[1], bool)):
            raise UserError(f"{where} edge {position} must be [op_name, input_index], got {edge!r}")
        node = position // 2
        if not 0 <= edge[1] < node + 2:
            raise UserError(f"{where} edge {position}: node {node} can take inputs 0..{node + 1}, "
                            f"got {edge[1]}")
        edges.append((edge[0], edge[1]))
    return tuple(edges)


def _parse_concat(value, nodes, where) -> tuple:
    if not isinstance(value, (list, tuple)) or not value:
        raise UserError(f"{where} must be a non-empty list of node indices")
    for index in value:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < nodes + 2:
            raise UserError(f"{where}: {index!r} is not a state index in 0..{nodes + 1}")
    if len(set(value)) != len(value):
        raise UserError(f"{where} lists a node twice")
    return tuple(value)


def published(name: str) -> Genotype:
    """A published genotype shipped under configs/genotypes/ (e.g. DARTS_V2, PC_DARTS)."""
    from ubnas_tf.config import CONFIG_DIR

    path = CONFIG_DIR / "genotypes" / f"{name}.json"
    if not path.is_file():
        shipped = sorted(p.stem for p in (CONFIG_DIR / "genotypes").glob("*.json"))
        raise UserError(f"no published genotype {name!r}: use one of {', '.join(shipped)}")
    return Genotype.load(path)
