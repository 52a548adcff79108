"""A report's sections as Markdown and as one self-contained HTML page.

A section is (name, items); an item is a paragraph (str, with **bold** and `code`), a
figure (``("figure", caption, png_path)``), a headline (``("headline", text)``) or a
table (``{"headers": [...], "rows": [[cell, ...]]}``, ``"plain": True`` for one
whose cells all align left). A cell is text (a newline starts a
new line) or ``{"thumbs": [(caption, png_path), ...], "text": str}``. The HTML embeds
every picture as a data URI; the Markdown links them relative to the report's folder.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path


def fmt(value: object, digits: int = 3, *, spec: str | None = None) -> str:
    """A number in a table, a report or a label: ``-`` for None, a float with ``digits``
    decimals (or in the format ``spec``, e.g. ``".3g"``), anything else as ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float) or spec is not None:
        return format(value, spec or f".{digits}f")
    return str(value)


def _rel(path: Path, folder: Path) -> str:
    path, folder = Path(path).resolve(), folder.resolve()
    return str(path.relative_to(folder)) if folder in path.parents else str(path)


def _md_cell(cell, folder: Path) -> str:
    if isinstance(cell, dict):
        pics = " ".join(f"![{caption}]({_rel(p, folder)})" for caption, p in cell.get("thumbs", []))
        text = cell.get("text", "")
        return (pics + ("<br>" if pics and text else "") + text.replace("\n", "<br>")).replace("|", "\\|")
    return str(cell).replace("|", "\\|").replace("\n", "<br>")


def markdown(title: str, sections, folder: Path) -> str:
    lines = [f"# {title}", ""]
    for name, items in sections:
        lines += [f"## {name}", ""]
        for item in items:
            if isinstance(item, str):
                lines += [item, ""]
            elif isinstance(item, tuple) and item[0] == "headline":
                lines += [f"> **{item[1]}**", ""]
            elif isinstance(item, tuple):
                _, caption, path = item
                lines += [f"![{caption}]({_rel(path, folder)})", "", f"*{caption}*", ""]
            else:
                lines.append("| " + " | ".join(item["headers"]) + " |")
                lines.append("|" + "---|" * len(item["headers"]))
                lines += ["| " + " | ".join(_md_cell(c, folder) for c in row) + " |" for row in item["rows"]]
                lines.append("")
    return "\n".join(lines)


def inline(text: str) -> str:
    """Escape, then render **bold** and `code` as the Markdown does."""
    out = html.escape(text)
    parts = out.split("**")
    out = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = out.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


_NUMBER = re.compile(r"^[-+]?[\d.,]+(%| s|x)?( \[|\n|/| |$)")


def _html_cell(cell, plain: bool = False) -> str:
    if isinstance(cell, dict):
        pics = "".join(f"<figure class='thumb'><img alt='{html.escape(c)}' src='{_png(p)}'>"
                       f"<figcaption>{html.escape(c)}</figcaption></figure>" for c, p in cell.get("thumbs", []))
        text = "<br>".join(html.escape(t) for t in cell.get("text", "").split("\n")) if cell.get("text") else ""
        return f"<td class='pics'>{pics}{'<div>' + text + '</div>' if text else ''}</td>"
    text = str(cell)
    classes = (["num"] if not plain and _NUMBER.match(text) else []) + (["lines"] if "\n" in text else [])
    opening = f"<td class='{' '.join(classes)}'>" if classes else "<td>"
    return opening + "<br>".join(html.escape(t) for t in text.split("\n")) + "</td>"


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1340px;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.88em}"
    "th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}"
    "td.num{text-align:right}th{background:#f3f3f3}"
    "img{max-width:100%}figcaption{font-style:italic;font-size:0.9em}"
    ".headline{font-size:1.15em;border-left:5px solid #2a6;background:#f2faf5;padding:0.6em 1em;margin:1em 0}"
    "td.lines,td.pics{white-space:nowrap}td.pics{text-align:left}"
    "figure.thumb{display:inline-block;margin:0 4px 0 0;text-align:center}"
    "figure.thumb img{image-rendering:pixelated;width:84px;height:84px;border:1px solid #ddd}td.pics{min-width:276px}"
    "figure.thumb figcaption{font-size:0.75em;font-style:normal}"
)


def page(title: str, sections) -> str:
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    for name, items in sections:
        parts.append(f"<h2>{html.escape(name)}</h2>")
        for item in items:
            if isinstance(item, str):
                parts.append(f"<p>{inline(item)}</p>")
            elif isinstance(item, tuple) and item[0] == "headline":
                parts.append(f"<p class='headline'>{inline(item[1])}</p>")
            elif isinstance(item, tuple):
                _, caption, path = item
                parts.append(f"<figure><img alt='{html.escape(caption)}' src='{_png(path)}'>"
                             f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            else:
                head = "".join(f"<th>{html.escape(h)}</th>" for h in item["headers"])
                plain = item.get("plain", False)  # a list of settings: every cell aligned left
                body = "".join("<tr>" + "".join(_html_cell(c, plain) for c in row) + "</tr>" for row in item["rows"])
                parts.append(f"<table><tr>{head}</tr>{body}</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
