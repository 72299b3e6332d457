"""Write the JSON Schema of every metering event type to docs/events/.

Run `python -m agentpool_dev.export_schemas` after changing agentpool.events, and commit the
result. With `--check` it writes nothing and exits 1 when a committed schema differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agentpool.events import export_json_schemas

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "events"


def schema_file_name(detail_type: str) -> str:
    """Return the file name of a detail-type's schema, e.g. model-usage.schema.json."""
    return detail_type.lower().replace(" ", "-") + ".schema.json"


def render_schemas() -> dict[str, str]:
    """Render each event type's schema as the text of its file, keyed by file name."""
    return {
        schema_file_name(detail_type): json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for detail_type, schema in export_json_schemas().items()
    }


def stale_schema_files(schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Return the names of schema files that are missing, differ from the code, or are extra."""
    rendered = render_schemas()
    stale = [
        name
        for name, text in rendered.items()
        if not (schema_dir / name).is_file()
        or (schema_dir / name).read_text(encoding="utf-8") != text
    ]
    extra = [path.name for path in schema_dir.glob("*.schema.json") if path.name not in rendered]
    return sorted(stale + extra)


def write_schemas(schema_dir: Path = SCHEMA_DIR) -> None:
    """Rewrite every schema file and delete those of event types that no longer exist."""
    schema_dir.mkdir(parents=True, exist_ok=True)
    rendered = render_schemas()
    for path in schema_dir.glob("*.schema.json"):
        if path.name not in rendered:
            path.unlink()
    for name, text in rendered.items():
        (schema_dir / name).write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when a committed schema differs from the code",
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_schema_files()
        for name in stale:
            print(f"stale schema: docs/events/{name}", file=sys.stderr)
        if stale:
            print("run: python -m agentpool_dev.export_schemas", file=sys.stderr)
        return 1 if stale else 0
    write_schemas()
    return 0


if __name__ == "__main__":
    sys.exit(main())
