"""A seeded generator of messy CSV extracts, for differential tests against the reference.

The generator does not predict what the pipeline should do with a file: it only writes bytes
that mix everything the contract has to handle (``tests.reference.contract`` then says what each
row must become). So it can be as messy as it likes:

- good rows, and rows breaking every rule (required, integer, range, length, instant format,
  real instant, foreign key, unique), often several at once;
- too few and too many fields, single-field records (``""``, whitespace only);
- quoted fields with commas, doubled quotes, LF and CRLF inside quotes, fields quoted for no need;
- a BOM, LF / CRLF / mixed line ends, blank lines, no final newline;
- a header row (exact, messy case and whitespace, quoted, another table's, a look-alike, or one
  far into the file);
- duplicate ids near and far apart, spelled differently ('1', '+1', ' 01 ', '0000000000000000001');
- leading and trailing whitespace, ASCII and not (NBSP, ideographic space, U+2028, NEL...), and
  characters that look like whitespace but are not (U+001C-U+001F, zero-width space, BOM);
- non-ASCII text (accents, combining marks, CJK, right-to-left, emoji with joiners);
- instants with 0-9 fraction digits, leap days, ends of years and quarters, years 0001 and 9999;
- unknown and out-of-range references; fields starting with = + - @ ' or a tab;
- now and then a very long field (hundreds to tens of thousands of characters);
- optionally (``Mess.odd_quoting``): quotes inside unquoted fields, text after a closing quote,
  whitespace before an opening quote, lone CR line ends, an unterminated quote at the end;
- optionally (``Mess.unreadable``): a NUL byte or invalid UTF-8 somewhere.

Two ways to draw files:

- ``messy_extract`` / ``generated_tables``: everything drawn from ``random.Random(seed)`` (one
  seed, one file, on any machine); for files of thousands of rows.
- ``extract_bytes`` and ``row_fields`` (Hypothesis strategies, built lazily so that this module
  imports without Hypothesis): small files built from lists of generated rows, which Hypothesis
  shrinks to a minimal failing file when a differential test fails.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from tests.reference.contract import INT_MAX, INT_MIN, TABLES, WHITESPACE, column_names

# -- pools of field text -------------------------------------------------------------------------

DEPARTMENT_WORDS = [
    "Sales",
    "Marketing",
    "Research",
    "Engineering",
    "Support",
    "Legal",
    "Accounting",
    "Training",
    "Services",
    "Product Management",
    "Business Development",
    "Human Resources",
    "Recherche & Développement",
    "Ventas",
    "営業部",
    "Поддержка",
    "Logística",
    "Qualität",
    "مبيعات",
    "🚀 Growth",
]
JOB_WORDS = [
    "Marketing Assistant",
    "VP Sales",
    "Biostatistician IV",
    "Account Executive",
    "Nurse",
    "Teacher",
    "Data Engineer",
    "Analyst Programmer",
    "Développeuse",
    "Ingenieur für Qualität",
    "看護師",
    "Программист",
    "Jefe de Ventas",
    "Señor Dev 👩‍💻",
    "Ægir's Smith",
    "Δάσκαλος",
]
FIRST_NAMES = [
    "Harold",
    "Ty",
    "Lyman",
    "Zoë",
    "Åsa",
    "José",
    "Łukasz",
    "Ngozi",
    "Chloé",
    "Søren",
    "Mía",
    "İlkay",
    "Ægir",
    "Ödön",
    "Siobhán",
    "Nguyễn",
    "Renée",
    "山田",
    "王",
    "김",
    "Юлия",
    "Αλέξης",
    "محمد",
    "דוד",
    "Zoe\u0301",
    "Jean-Luc",
    "O'Brien",
]
LAST_NAMES = [
    "Vogt",
    "Hofer",
    "Hadye",
    "Ångström",
    "García",
    "Wałęsa",
    "Okafor",
    "Müller",
    "太郎",
    "伟",
    "민준",
    "Иванова",
    "Παπαδόπουλος",
    "Smith",
    "de la Cruz",
    "Ñúñez",
]
# Names that stress quoting, formula neutralisation, reason parsing and the loaders.
TRICKY_NAMES = [
    "Doe, Jane",
    'He said "hi"',
    '"quoted"',
    "two\nlines",
    "crlf\r\ninside",
    "cr\ronly",
    "=SUM(A1:A9)",
    "+44 Sales",
    "-minus",
    "@handle",
    "'apostrophe",
    "\tTab start",
    "semi; id: 5 does not exist in departments",
    "a; name: longer than 255 characters",
    "\\.",
    "x\n\\.\ny",
    "\\N",
    "NULL",
    "",
    "\x1ccontrol",
    "end\x1f",
    "\u200bzero width",
    "emoji 👩‍💻 family 👨‍👩‍👧",
    "ﬁ ligature",
    "  inner  spaces  ",
    "日本語の名前",
    "עברית",
    "tab\tinside",
    "back\\slash",
    "percent %s {0}",
    "<b>html</b>",
    "🙂" * 255,
    "é" * 255,
]
# Whitespace a field may be padded with (stripped by the contract) ...
PADDING = [
    " ",
    "  ",
    "\t",
    "\xa0",
    "\u3000",
    "\u2003",
    "\u202f",
    "\x0b",
    "\x0c",
    "\x85",
    "\u2028",
    "\u2029",
    "\u1680",
    "\u205f",
    "\u200a",
    "\n",
    "\r\n",
    " \t\xa0",
    "\x1c",
    "\x1f ",
]
# ... and characters at a field's edge that are not whitespace (kept, or not an integer).
NOT_WHITESPACE = ["\u200b", "\ufeff", "\u180e", "\u2060"]
assert not any(c in WHITESPACE for c in "".join(NOT_WHITESPACE))

BAD_INTEGERS = [
    "x5",
    "1.0",
    "1e3",
    "0x1F",
    "١٢",
    "１２",
    "5 5",
    "+-1",
    "--1",
    "1_000",
    "½",
    "²",
    "۳",
    "five",
    "∞",
    "1,0",
    "+",
    "-",
    "'5",
    "\x1c5",
    "5\u200b",
    "5\x1f",
    "(5)",
    "5-",
    "NaN",
    "null",
    "1 000",
    "\u22125",
]
OUT_OF_RANGE = [
    "2147483648",
    "-2147483649",
    "99999999999999999999",
    "+2147483648",
    "-0000000002147483649",
    "9" * 40,
    "1" * 5000,
    "00000000004294967296",
]
EDGE_INTEGERS = ["2147483647", "-2147483648", "0", "-0", "+0", "000"]
BAD_INSTANT_FORMATS = [
    "2021-11-07 02:48:42Z",
    "2021-11-07T02:48:42",
    "2021-11-07T02:48:42+00:00",
    "2021-11-07T02:48:42.Z",
    "2021-11-07T02:48:42.1234567890Z",
    "21-11-07T02:48:42Z",
    "2021-11-07t02:48:42z",
    "yesterday",
    "2021-11-07T02:48Z",
    "2021-11-07",
    "２０２１-11-07T02:48:42Z",
    "2021-1-7T2:48:42Z",
    "2021-11-07T02:48:42.123456789ZZ",
    "20211107T024842Z",
    "2021-11-07T02:48:42,5Z",
    "+2021-11-07T02:48:42Z",
    "2021-11-07T02:48:42 Z",
    "2021-11-07T02:48:4２Z",
    "12021-11-07T02:48:42Z",
    "2021-11-07T02:48:42.-1Z",
    "2021-11-07T02:48:42Z\x1f",
]
NOT_REAL_INSTANTS = [
    "2021-02-29T00:00:00Z",
    "1900-02-29T12:00:00Z",
    "2100-02-29T00:00:00Z",
    "2021-02-30T00:00:00Z",
    "2021-13-01T00:00:00Z",
    "2021-00-10T00:00:00Z",
    "2021-04-31T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2021-01-01T24:00:00Z",
    "2021-01-01T23:60:00Z",
    "2021-01-01T23:59:60Z",
    "2021-01-00T00:00:00Z",
    "2021-06-31T10:00:00.5Z",
    "9999-12-32T00:00:00Z",
    "2021-99-99T99:99:99.999999999Z",
    "0000-02-29T00:00:00Z",
]
EDGE_INSTANTS = [
    "2020-02-29T12:00:00Z",
    "2000-02-29T00:00:00Z",
    "2024-02-29T23:59:59.999999999Z",
    "2021-03-31T23:59:59.999999999Z",
    "2021-04-01T00:00:00Z",
    "2021-06-30T23:59:59.9999999Z",
    "2021-07-01T00:00:00.000Z",
    "2021-09-30T23:59:59.999999Z",
    "2021-10-01T00:00:00.1Z",
    "2021-12-31T23:59:59.999999999Z",
    "2021-01-01T00:00:00Z",
    "2022-01-01T00:00:00Z",
    "2020-12-31T23:59:59.5Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999999Z",
    "2021-11-07T02:48:42.000000001Z",
    "2021-11-07T02:48:42.0000009Z",
    "0004-02-29T00:00:00Z",
]


@dataclass(frozen=True)
class Mess:
    """How messy a generated extract is. Rates are per row (or per field for the text ones);
    ``None`` for a per-file choice means: drawn from the seed."""

    bad_rate: float = 0.25  # rows given one or more broken rules on purpose
    misshapen_rate: float = 0.03  # rows with too few / too many fields
    duplicate_rate: float = 0.03  # rows reusing an earlier row's id (near or far, respelt)
    quote_rate: float = 0.1  # fields quoted with no need
    padding_rate: float = 0.08  # fields padded with whitespace
    tricky_rate: float = 0.15  # names from TRICKY_NAMES, spellings like '+5' or '007'
    blank_line_rate: float = 0.02
    long_field_rate: float = 0.002  # a name of 300 to 20,000 characters
    huge_field_rate: float = 0.0  # a name of 70,000 characters (bigger than any read block)
    bom: bool | None = None
    header: str | None = None  # none exact messy quoted other pseudo late
    line_ends: str | None = None  # lf crlf mixed
    final_newline: bool | None = None
    odd_quoting: bool = False
    unreadable: str | None = None  # nul latin1 truncated surrogate overlong
    first_id: int = 1  # fresh ids are first_id, first_id + 1, ... (shuffled locally)
    distinct_names: bool = False  # department and job names made unique (" #<id>" appended)


HEADERS = ("none", "exact", "messy", "quoted", "other", "pseudo", "late")
UNREADABLE = ("nul", "latin1", "truncated", "surrogate", "overlong")


def random_mess(rng: random.Random, **fixed) -> Mess:
    """A random configuration (rates and per-file choices), ``fixed`` ones kept."""
    mess = Mess(
        bad_rate=rng.choice([0.0, 0.05, 0.25, 0.6, 1.0]),
        misshapen_rate=rng.choice([0.0, 0.01, 0.05, 0.2]),
        duplicate_rate=rng.choice([0.0, 0.02, 0.1]),
        quote_rate=rng.choice([0.0, 0.1, 0.5, 1.0]),
        padding_rate=rng.choice([0.0, 0.05, 0.3]),
        tricky_rate=rng.choice([0.0, 0.1, 0.4]),
        blank_line_rate=rng.choice([0.0, 0.02, 0.2]),
        long_field_rate=rng.choice([0.0, 0.0, 0.005, 0.05]),
        bom=rng.random() < 0.3,
        header=rng.choice(HEADERS),
        line_ends=rng.choice(["lf", "crlf", "mixed"]),
        final_newline=rng.random() < 0.8,
    )
    return replace(mess, **fixed)


# -- one field of each kind --------------------------------------------------------------------


def _good_instant(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return rng.choice(EDGE_INSTANTS)
    year = rng.choice([2021] * 6 + [2019, 2020, 2022, 2023])
    month = rng.randint(1, 12)
    days = [
        31,
        29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][month - 1]
    text = (
        f"{year:04d}-{month:02d}-{rng.randint(1, days):02d}T{rng.randint(0, 23):02d}:"
        f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    )
    if rng.random() < 0.3:
        text += "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 9)))
    return text + "Z"


def _spelt(value: int, rng: random.Random, tricky_rate: float) -> str:
    """An integer as a user might write it: mostly plain, sometimes '+5', '007', '-0'..."""
    if rng.random() >= tricky_rate:
        return str(value)
    sign = "-" if value < 0 else rng.choice(["", "+"])
    return sign + "0" * rng.choice([1, 2, 18]) + str(abs(value))


def _name(table: str, rng: random.Random, mess: Mess) -> str:
    roll = rng.random()
    if roll < mess.long_field_rate:
        return _long_text(rng, rng.choice([256, 300, 1000, 5000, 20000]))
    if roll < mess.long_field_rate + mess.huge_field_rate:
        return _long_text(rng, 70000)
    if rng.random() < mess.tricky_rate:
        name = rng.choice(TRICKY_NAMES)
        if name:  # an empty name is kept empty: the required rule
            return name
    if table == "departments":
        return rng.choice(DEPARTMENT_WORDS) + rng.choice(["", "", f" {rng.randint(1, 9)}"])
    if table == "jobs":
        return rng.choice(JOB_WORDS) + rng.choice(["", "", " II", f" {rng.randint(1, 20)}"])
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def _long_text(rng: random.Random, length: int) -> str:
    alphabet = 'abcdefghij klmnopqrstuvwxyz,"é李🙂\n'
    return "L" + "".join(rng.choice(alphabet) for _ in range(length - 2)) + "g"


def _padded(text: str, rng: random.Random, mess: Mess) -> str:
    if rng.random() < mess.padding_rate:
        text = rng.choice(PADDING + [""]) + text + rng.choice(PADDING + [""])
    if rng.random() < mess.tricky_rate * 0.05:
        text = (
            rng.choice(["", rng.choice(NOT_WHITESPACE)]) + text + rng.choice(["", rng.choice(NOT_WHITESPACE)])
        )
    return text


# -- rows --------------------------------------------------------------------------------------


def generate_rows(
    table: str, rows: int, seed: int, known_department_ids=(), known_job_ids=(), mess: Mess | None = None
) -> list[list[str]]:
    """``rows`` data rows of raw field text (before quoting), the messiness of ``mess``."""
    mess = mess or Mess()
    rng = random.Random(seed)
    columns = TABLES[table]
    known = {"departments": sorted(known_department_ids), "jobs": sorted(known_job_ids)}
    ids = list(range(mess.first_id, mess.first_id + rows))
    for start in range(0, len(ids), 50):  # shuffled within runs of 50: out of order, but local
        block = ids[start : start + 50]
        rng.shuffle(block)
        ids[start : start + 50] = block
    out: list[list[str]] = []
    used: list[int] = []
    for index in range(rows):
        key = ids[index]
        if used and rng.random() < mess.duplicate_rate:
            near = rng.random() < 0.5
            key = rng.choice(used[-5:] if near else used[: max(1, len(used) // 20)])
        used.append(key)
        values: list[str] = []
        for column in columns:
            if column.name == "id":
                values.append(_spelt(key, rng, mess.tricky_rate))
            elif column.references:
                pool = known[column.references]
                values.append(
                    _spelt(rng.choice(pool), rng, mess.tricky_rate) if pool else str(rng.randint(1, 50))
                )
            elif column.type == "timestamp":
                values.append(_good_instant(rng))
            else:
                name = _name(table, rng, mess)
                values.append(
                    f"{name} #{key}" if mess.distinct_names and table != "hired_employees" else name
                )
        if rng.random() < mess.bad_rate:
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                _break(values, columns, known, rng)
        values = [_padded(value, rng, mess) for value in values]
        if rng.random() < mess.misshapen_rate:
            values = _misshapen(values, rng)
        out.append(values)
    return out


def _break(values: list[str], columns, known: dict, rng: random.Random) -> None:
    """Break one rule of one field, chosen at random among those the table has."""
    position = rng.randrange(len(columns))
    column = columns[position]
    choices = ["required"]
    if column.type == "integer":
        choices += ["integer", "range", "edge"]
        if column.references:
            choices += ["foreign key"] * 3
    elif column.type == "string":
        choices += ["length"]
    else:
        choices += ["instant format", "real instant", "edge instant"]
    rule = rng.choice(choices)
    if rule == "required":
        values[position] = rng.choice(["", "", " ", "\t", "\u3000", "\xa0\xa0", "\r\n", "\x85"])
    elif rule == "integer":
        values[position] = rng.choice(BAD_INTEGERS)
    elif rule == "range":
        values[position] = rng.choice(OUT_OF_RANGE)
    elif rule == "edge":  # valid integers at the ends of the range (a key, or an unknown reference)
        values[position] = rng.choice(EDGE_INTEGERS)
    elif rule == "foreign key":
        pool = known[column.references]
        top = max(pool, default=0)
        values[position] = str(
            rng.choice([top + rng.randint(1, 1000), -rng.randint(1, 99), INT_MAX, INT_MIN, top + 1])
        )
    elif rule == "length":
        values[position] = _long_text(rng, rng.choice([256, 257, 300, 1000]))
    elif rule == "instant format":
        values[position] = rng.choice(BAD_INSTANT_FORMATS)
    elif rule == "real instant":
        values[position] = rng.choice(NOT_REAL_INSTANTS)
    else:
        values[position] = rng.choice(EDGE_INSTANTS)


def _misshapen(values: list[str], rng: random.Random) -> list[str]:
    kind = rng.choice(["fewer", "fewer", "more", "more", "one empty", "one blank"])
    if kind == "fewer":
        return values[: rng.randrange(1, len(values))] if len(values) > 1 else values + ["x"]
    if kind == "more":
        return values + [rng.choice(["extra", "", "1", "a,b"]) for _ in range(rng.randint(1, 3))]
    if kind == "one empty":
        return ['""'] if len(values) != 1 else ["a", "b"]  # written as is: a quoted empty field
    return [rng.choice([" ", "\t", "\u3000 "])] if len(values) != 1 else ["a", "b"]


# -- the file ----------------------------------------------------------------------------------


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _render_field(value: str, rng: random.Random, mess: Mess) -> str:
    needs = any(c in value for c in ',"\r\n')
    if mess.odd_quoting and rng.random() < 0.05:
        odd = rng.choice(["bare", "after", "before"])
        if odd == "bare" and value and not any(c in value for c in ",\r\n") and not value.startswith('"'):
            cut = rng.randint(1, len(value))
            return value[:cut] + '"' + value[cut:]  # csv: a quote inside an unquoted field is text
        if odd == "after" and not any(c in value for c in "\r\n"):
            return _quoted(value) + "tail"  # csv: the text after the closing quote is appended
        if odd == "before" and not needs:
            return " " + _quoted(value)  # csv: not a quoted field, the quotes are text
    if needs or rng.random() < mess.quote_rate:
        return _quoted(value)
    return value


def _header(table: str, kind: str, rng: random.Random) -> list[str] | None:
    names = list(column_names(table))
    if kind == "exact":
        return names
    if kind == "messy":
        return [
            rng.choice(PADDING[:6] + [""])
            + (n.upper() if rng.random() < 0.5 else n.title())
            + rng.choice(["", " ", "\u3000"])
            for n in names
        ]
    if kind == "quoted":
        return [_quoted(n) for n in names]
    if kind == "other":
        other = rng.choice([t for t in TABLES if t != table])
        return list(column_names(other))
    if kind == "pseudo":  # the key's name first, but not the header
        return ["id"] + ["Id" if i % 2 else "name" for i in range(len(names) - 1)]
    return None


def messy_extract(
    table: str,
    rows: int,
    seed: int,
    known_department_ids=(),
    known_job_ids=(),
    mess: Mess | None = None,
    **overrides,
) -> bytes:
    """A messy extract of ``table`` with ``rows`` generated data rows (plus, depending on the
    mess, a header row and blank lines), as bytes. ``overrides`` replace fields of ``mess``."""
    mess = replace(mess or Mess(), **overrides)
    rng = random.Random(seed * 7919 + 17)
    records = generate_rows(table, rows, seed, known_department_ids, known_job_ids, mess)
    bom = mess.bom if mess.bom is not None else rng.random() < 0.3
    header = mess.header if mess.header is not None else rng.choice(HEADERS)
    line_ends = mess.line_ends or rng.choice(["lf", "crlf", "mixed"])
    final_newline = mess.final_newline if mess.final_newline is not None else rng.random() < 0.8
    return render_extract(
        table, records, rng, mess, bom=bom, header=header, line_ends=line_ends, final_newline=final_newline
    )


def render_extract(
    table: str,
    records: list[list[str]],
    rng: random.Random,
    mess: Mess | None = None,
    bom: bool = False,
    header: str = "none",
    line_ends: str = "lf",
    final_newline: bool = True,
) -> bytes:
    """Records of raw field text written as a CSV file (quoting each field as needed or by
    chance), with the file-level mess: BOM, header, line ends, blank lines, final newline."""
    mess = mess or Mess()
    lines: list[list[str]] = []  # each record's fields as written (quoted or not)
    head = _header(table, header, rng) if header != "late" else None
    if head is not None:
        lines.append([f if f.startswith('"') else _render_field(f, rng, mess) for f in head])
    for values in records:
        if values == ['""']:
            lines.append(['""'])
        else:
            lines.append([_render_field(v, rng, mess) for v in values])
    if header == "late" and lines:
        lines.insert(rng.randrange(len(lines) + 1), list(column_names(table)))

    def end() -> str:
        if mess.odd_quoting and rng.random() < 0.05:
            return "\r"  # a lone CR ends a record too
        if line_ends == "lf":
            return "\n"
        if line_ends == "crlf":
            return "\r\n"
        return rng.choice(["\n", "\r\n"])

    parts: list[str] = []
    if rng.random() < mess.blank_line_rate * 5:
        parts.append(end())  # blank lines before the first record do not make it record 2
    for index, fields in enumerate(lines):
        parts.append(",".join(fields))
        if index < len(lines) - 1 or final_newline:
            parts.append(end())
        while rng.random() < mess.blank_line_rate and index < len(lines) - 1:
            parts.append(end())
    if mess.odd_quoting and rng.random() < 0.2:
        if not final_newline and parts:
            parts.append(end())
        parts.append('9,"unterminated')  # a quote left open at the end of the file
    data = "".join(parts).encode("utf-8")
    if bom:
        data = b"\xef\xbb\xbf" + data
    if mess.unreadable:
        data = spoil(data, mess.unreadable, rng)
    return data


def spoil(data: bytes, how: str, rng: random.Random) -> bytes:
    """Make ``data`` unreadable: a NUL byte, a Latin-1 byte, a character cut at the end, an
    encoded surrogate or an overlong encoding, at a random place."""
    at = rng.randint(0, len(data))
    if how == "nul":
        return data[:at] + b"\x00" + data[at:]
    if how == "latin1":
        return data[:at] + "Zoë".encode("latin-1") + data[at:]
    if how == "truncated":
        return data + "€".encode()[:2]
    if how == "surrogate":
        return data[:at] + b"\xed\xa0\x80" + data[at:]
    if how == "overlong":
        return data[:at] + b"\xc0\xaf" + data[at:]
    raise ValueError(how)


def generated_tables(
    seed: int, departments: int, jobs: int, hires: int, mess: Mess | None = None, random_messes: bool = True
) -> dict[str, list[tuple[str, bytes]]]:
    """One file per table, the hires referring to the departments and jobs the first two files
    define (and, by the mess, to some that do not exist)."""
    from tests.reference.contract import reference_file

    rng = random.Random(seed)

    def pick() -> Mess:
        return random_mess(rng) if random_messes else (mess or Mess())

    dept = messy_extract("departments", departments, seed + 1, mess=pick())
    job = messy_extract("jobs", jobs, seed + 2, mess=pick())
    department_ids = {row[0] for row in reference_file("departments", dept).loaded} or {1}
    job_ids = {row[0] for row in reference_file("jobs", job).loaded} or {1}
    hire = messy_extract("hired_employees", hires, seed + 3, department_ids, job_ids, mess=pick())
    return {
        "departments": [("departments.csv", dept)],
        "jobs": [("jobs.csv", job)],
        "hired_employees": [("hired_employees.csv", hire)],
    }


# -- Hypothesis strategies ---------------------------------------------------------------------

FILE_TEXT = "".join(
    dict.fromkeys("ab Zé李🙂,\"'\n\r;:=+-@.0123456789TZ" + "".join(PADDING) + "".join(NOT_WHITESPACE))
)


def _strategies():
    from hypothesis import strategies as st

    return st


def _spell(pair) -> str:
    value, style = pair
    sign = "-" if value < 0 else ("+" if style == "+" else "")
    return sign + ("" if style == "+" else style) + str(abs(value))


def _instant_text(parts) -> str:
    when, digits, fraction = parts
    text = (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    )
    return text + ("." + f"{fraction:09d}"[:digits] if digits else "") + "Z"


def field_text(column, known_ids=()):
    """A strategy of raw text for one field of ``column`` (a ``RefColumn``): good values and
    every kind of bad one, padded now and then. Shrinks towards a plain good value."""
    st = _strategies()
    text = st.text(alphabet=FILE_TEXT, max_size=12)
    if column.type == "integer":
        ids = st.sampled_from(sorted(known_ids)) if column.references and known_ids else st.integers(-3, 40)
        spelt = st.tuples(ids, st.sampled_from(["+", "0", "00", "0000000000000000"])).map(_spell)
        good = ids.map(str)
        core = st.one_of(
            good,
            good,
            good,
            spelt,
            st.integers(-60, 60).map(str),
            st.sampled_from(BAD_INTEGERS + OUT_OF_RANGE + EDGE_INTEGERS + [""]),
            text,
        )
    elif column.type == "string":
        good = st.sampled_from(DEPARTMENT_WORDS + JOB_WORDS + FIRST_NAMES)
        core = st.one_of(
            good,
            good,
            good,
            text,
            st.sampled_from(TRICKY_NAMES),
            st.integers(250, 400).map(lambda n: "é" * (n - 1) + "x"),
        )
    else:
        good = st.tuples(st.datetimes(), st.integers(0, 9), st.integers(0, 999_999_999)).map(_instant_text)
        core = st.one_of(
            good,
            good,
            good,
            st.sampled_from(EDGE_INSTANTS + NOT_REAL_INSTANTS + BAD_INSTANT_FORMATS + [""]),
            text,
        )
    edges = st.one_of(st.just(""), st.just(""), st.sampled_from(PADDING), st.sampled_from(NOT_WHITESPACE))
    return st.tuples(edges, core, edges).map("".join)


def row_fields(table: str, known_department_ids=(), known_job_ids=()):
    """A strategy of one record's raw fields: usually one per column, sometimes fewer or more,
    ``['""']`` (one quoted empty field) or one blank field."""
    st = _strategies()
    known = {"departments": known_department_ids, "jobs": known_job_ids}
    columns = TABLES[table]
    fields = st.tuples(*[field_text(c, known.get(c.references or "", ())) for c in columns]).map(list)
    extra = st.lists(st.sampled_from(["", "x", "1", "a,b"]), min_size=1, max_size=3)
    return st.one_of(
        fields,
        fields,
        fields,
        st.tuples(fields, st.integers(1, len(columns) - 1)).map(lambda t: t[0][: t[1]]),
        st.tuples(fields, extra).map(lambda t: t[0] + t[1]),
        st.sampled_from([['""'], [" "], ["\u3000"]]),
    )


def extract_bytes(
    table: str,
    known_department_ids=(),
    known_job_ids=(),
    max_rows: int = 30,
    odd_quoting: bool = False,
    unreadable: bool = False,
):
    """A strategy of whole files of ``table``: a list of ``row_fields`` rendered with a drawn
    BOM, header kind, line ends, final newline, quoting and blank lines (``render_extract``)."""
    st = _strategies()

    @st.composite
    def build(draw):
        rows = draw(st.lists(row_fields(table, known_department_ids, known_job_ids), max_size=max_rows))
        mess = Mess(
            quote_rate=draw(st.sampled_from([0.0, 0.2, 1.0])),
            blank_line_rate=draw(st.sampled_from([0.0, 0.1, 0.3])),
            odd_quoting=odd_quoting,
        )
        rng = draw(st.randoms(use_true_random=False))
        data = render_extract(
            table,
            rows,
            rng,
            mess,
            bom=draw(st.booleans()),
            header=draw(st.sampled_from(HEADERS)),
            line_ends=draw(st.sampled_from(["lf", "crlf", "mixed"])),
            final_newline=draw(st.booleans()),
        )
        if unreadable and draw(st.integers(0, 4)) == 0:
            data = spoil(data, draw(st.sampled_from(UNREADABLE)), rng)
        return data

    return build()
