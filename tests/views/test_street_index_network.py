"""The report page's street search serves the configured area's street index
(``DISPATCHWIRE_OSM_FILE``): its own once built (``python -m views.streets FILE.pbf``),
none until then; never Helsinki's streets for another area (before, always Helsinki's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dispatchwire.settings import Settings
from tests.networks import moved_network
from tests.views.test_mapspec import Client
from views.streets import index_file_for, write_index


def served(settings: Settings) -> dict:
    response = Client(settings).get("/views/streets.json")
    assert response.status_code == 200
    return response.json()


def test_another_area_gets_its_own_street_index_or_none(tmp_path: Path) -> None:
    network = moved_network(tmp_path / "roads-elsewhere.json.gz", 1.0)
    settings = Settings(osm_file=network, data_dir=tmp_path / "data")
    assert served(settings)["streets"] == []  # not built yet: nothing, not Helsinki's
    street = {"name": "Pohjoinen Esplanadi", "lat": 61.1679, "lon": 24.9496}
    street["bbox"] = [61.1676, 24.9466, 61.1682, 24.9527]
    index = {"source": "elsewhere.osm.pbf", "attribution": "OSM", "streets": [street]}
    write_index(index, index_file_for(network, settings.data_dir))
    assert served(settings)["streets"] == [street]
    helsinki = {s["name"] for s in served(Settings())["streets"]}  # the default
    assert "Mannerheimintie" in helsinki


def test_the_build_command_writes_where_the_page_reads(tmp_path: Path) -> None:
    """``python -m views.streets FILE.pbf`` writes ``<data_dir>/streets-NAME.json``."""
    from views.streets import bundled_extract

    pbf = tmp_path / "Elsewhere.osm.pbf"
    pbf.write_bytes(bundled_extract().read_bytes())
    env = {"DISPATCHWIRE_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-m", "views.streets", str(pbf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    out = index_file_for(pbf, tmp_path / "data")
    assert out == tmp_path / "data" / "streets-elsewhere.json"
    settings = Settings(osm_file=pbf, data_dir=tmp_path / "data")
    names = {s["name"] for s in served(settings)["streets"]}
    assert "Mannerheimintie" in names and json.loads(out.read_text())["source"] == pbf.name
