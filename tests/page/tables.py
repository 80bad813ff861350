"""Reading the page's tables and elements back with the standard library's HTML parser."""

from __future__ import annotations

from html.parser import HTMLParser


class PageParser(HTMLParser):
    """Collects each table's rows of cell texts (by table id), and the attributes of every element."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.elements.append((tag, found))
        if tag == "table":
            self._table = found.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    return parser


def with_class(page: PageParser, tag: str, name: str) -> list[dict[str, str | None]]:
    """The attributes of the ``tag`` elements whose class list holds ``name``."""
    return [attrs for t, attrs in page.elements if t == tag and name in (attrs.get("class") or "").split()]
