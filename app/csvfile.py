"""CSV downloads: cells a spreadsheet will not run as formulas, and the response that carries them."""

from __future__ import annotations

import csv
import io

from flask import Response


def csv_safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (=, +, -, @ at the start)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_download(filename: str, header, rows) -> Response:
    """A CSV file to download: the header line, then one line per row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
