"""``arena-adapters bench``: sections run, one table, JSON with every section's rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from arena_adapters.bench import SECTIONS, BenchSettings, Row, SectionSkipped, run_sections
from arena_adapters.bench.rows import load_section
from arena_adapters.cli import main


def test_bench_quick_prints_one_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, markdown = tmp_path / "out" / "bench.json", tmp_path / "out" / "bench.md"
    assert main(["bench", "--quick", "--json", str(path), "--markdown", str(markdown)]) == 0
    out = capsys.readouterr().out
    _check_markdown(markdown.read_text())
    assert main(["bench", "--from-json", str(path), "--markdown", str(tmp_path / "again.md")]) == 0
    assert (tmp_path / "again.md").read_text() == markdown.read_text()
    assert capsys.readouterr().out.split("\n")[:-2] == out.split("\n")[1:-3]  # the same table, no machine line
    assert "ratio = baseline / ours" in out
    for section in ("scheduler", "prefetch", "codecs", "end_to_end"):
        assert f"\n{section} " in out
    data = json.loads(path.read_text())
    assert data["settings"] == {"quick": True, "device": "cpu", "adapters": []}
    assert data["machine"]["cpus"] >= 1
    sections = {section["name"]: section for section in data["sections"]}
    assert list(sections) == list(SECTIONS)
    names = {row["name"] for section in sections.values() for row in section["rows"]}
    assert "replay step, 64 envs" in names
    assert "replay+aggregate=linear cycle, 64 envs" in names
    assert "openpi DROID observation pack+unpack" in names
    assert any(name.startswith("local, in phase, prefetch_steps=") for name in names)
    for section in sections.values():
        assert section["skipped"] is None
        for row in section["rows"]:
            assert row["ours_s"] > 0 and row["baseline_s"] > 0
            assert row["ratio"] == pytest.approx(row["baseline_s"] / row["ours_s"])
    codec_rows = [row for row in sections["codecs"]["rows"]]
    assert all(row["extra"]["floor_s"] > 0 and row["extra"]["message_bytes"] > 0 for row in codec_rows)
    assert all(row["extra"]["ceiling"] > 0 for row in sections["prefetch"]["rows"])
    _check_end_to_end(sections["end_to_end"]["rows"])


def _check_markdown(text: str) -> None:
    """One heading per section; the scheduler pivoted by size; the end-to-end summary, replicas and
    parts tables with a line per adapter and size."""
    blocks = {block.split("\n", 1)[0]: block for block in text.split("### ")[1:]}
    assert list(blocks) == list(SECTIONS)
    assert "| measurement | 64 envs: ours / Arena-style chunking |" in blocks["scheduler"]
    assert "| replay step | " in blocks["scheduler"]
    assert "| measurement | synchronous | prefetch | speed-up | ceiling | bound |" in blocks["prefetch"]
    assert "| openpi DROID observation pack+unpack | " in blocks["codecs"]
    end_to_end = blocks["end_to_end"]
    for adapter in ("gr00t", "openpi", "openvla"):
        for num_envs in (1, 16):
            assert f"\n| {adapter} | {num_envs} | " in end_to_end
            assert f"\n| {adapter}, {num_envs} envs | " in end_to_end
    assert "\n| openvla | 16 | 2 | " in end_to_end and "| requests per server |" in end_to_end
    assert "GB/s" in end_to_end  # the copy bandwidth row, in the table of rows no other table holds
    tables = end_to_end.split("\n\n")[1:]
    assert all(len({line.count("|") for line in table.splitlines()}) == 1 for table in tables), "ragged table"


def test_from_json_merges_split_runs_and_names_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from arena_adapters.bench.rows import load_results

    first, second, bad = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "bad.json"
    row = {"section": "extra", "name": "fast", "ours_s": 1e-6, "baseline_s": 4e-6, "baseline": "slow way",
           "extra": {"floor_s": 5e-7}, "ratio": 4.0}
    first.write_text(json.dumps({"sections": [{"name": "extra", "skipped": None, "wall_s": 1.0, "rows": [row]},
                                              {"name": "missing", "skipped": "not installed", "wall_s": 0.0, "rows": []}]}))
    second.write_text(json.dumps({"sections": [{"name": "extra", "skipped": None, "wall_s": 2.0,
                                                "rows": [{**row, "name": "slow", "ours_s": 2.0, "baseline_s": 1.0}]}]}))
    results = load_results([first, second])
    assert [(r.name, [x.name for x in r.rows], r.skipped, r.wall_s) for r in results] == [
        ("extra", ["fast", "slow"], None, 3.0), ("missing", [], "not installed", 0.0)]
    assert [x.ratio for x in results[0].rows] == [4.0, 0.5]
    bad.write_text(json.dumps({"rows": []}))
    assert main(["bench", "--from-json", str(first), "--from-json", str(bad)]) == 2
    assert f"{str(bad)!r} is not what `bench --json` writes" in capsys.readouterr().err
    assert main(["bench", "--from-json", str(tmp_path / "none.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["bench", "--from-json", str(first), "--quick"]) == 2
    assert "it takes only --markdown" in capsys.readouterr().err
    assert main(["bench", "--from-json", str(first), "--markdown", str(tmp_path / "m.md")]) == 0
    text = (tmp_path / "m.md").read_text()
    assert "| fast | 1.0 us | 4.0 us | 4.00x | slow way; floor 0.5 us |" in text
    assert "### missing\n\nskipped: not installed" in text
    odd = tmp_path / "odd.json"  # a known section's name, rows without its structure: the generic table
    odd.write_text(json.dumps({"sections": [{"name": "end_to_end", "skipped": None, "wall_s": 0.0,
                                             "rows": [{**row, "section": "end_to_end", "name": "x, 4 envs vs local"}]}]}))
    assert main(["bench", "--from-json", str(odd), "--markdown", str(tmp_path / "odd.md")]) == 0
    assert "| x, 4 envs vs local | 1.0 us | 4.0 us | 4.00x |" in (tmp_path / "odd.md").read_text()


def _check_end_to_end(rows: list[dict[str, Any]]) -> None:
    """Every adapter at 1 and 16 envs: vs the local limit, vs the Arena-style client, and one query's
    parts (each measured, adding up to no more than the parts they split)."""
    from arena_adapters.bench.end_to_end import PARTS

    by_name = {row["name"]: row for row in rows}
    for adapter in ("gr00t", "openpi", "openvla"):
        for num_envs in (1, 16):
            name = f"{adapter}, {num_envs} envs"
            assert by_name[f"{name} vs local"]["extra"]["env_steps_per_s"] > 0
            assert by_name[f"{name} vs local"]["extra"]["env_alone_env_steps_per_s"] > 0
            arena = by_name[f"{name} vs Arena-style"]["extra"]
            assert arena["arena_env_steps_per_s"] > 0 and arena["arena_requests_per_step"] > 0
            env_alone = by_name[f"{name} vs local"]["extra"]["env_alone_env_steps_per_s"]
            assert arena["zero_cost_bound"] == pytest.approx(env_alone / arena["arena_env_steps_per_s"], rel=0.02)
            assert arena["limit_vs_arena"] > 0
            query = by_name[f"{name}, one query"]["extra"]
            assert query["queries"] >= 1 and query["bytes_per_query"] > 0
            assert all(query[f"{part}_s"] >= 0 for part in PARTS)
            for part in ("obs_translation", "encode", "transfer", "server_decode", "client_decode",
                         "action_translation"):
                assert query[f"{part}_s"] > 0, (name, part)
            assert (query.get("wire_floor_s", 0) > 0) == (adapter == "gr00t"), (name, query)
    for adapter in ("gr00t", "openvla"):
        replicated = by_name[f"{adapter}, 16 envs, 2 replicas vs local"]["extra"]
        assert replicated["env_steps_per_s"] > 0 and replicated["local_env_steps_per_s"] > 0
        assert len(replicated["requests_per_replica"]) == 2 and min(replicated["requests_per_replica"]) > 0
    against_arena = by_name["openvla, 16 envs, 2 replicas vs Arena-style"]["extra"]
    assert against_arena["arena_env_steps_per_s"] > 0 and against_arena["arena_requests_per_step"] > 0
    assert against_arena["zero_cost_bound"] > 0 and against_arena["limit_vs_arena"] > 0
    assert sorted(name for name in by_name if "replicas" in name) == [
        "gr00t, 16 envs, 2 replicas vs local", "openvla, 16 envs, 2 replicas vs Arena-style",
        "openvla, 16 envs, 2 replicas vs local"]
    assert by_name["memory copy bandwidth (np.copyto, 4 MiB)"]["extra"]["GB_per_s"] > 0


def test_end_to_end_of_chosen_adapters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--adapter`` limits the end-to-end section to those adapters (a run split over several calls,
    merged again by ``--from-json``); an adapter it does not measure is refused up front."""
    path = tmp_path / "openpi.json"
    assert main(["bench", "--quick", "--section", "end_to_end", "--adapter", "openpi", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["settings"]["adapters"] == ["openpi"]
    names = [row["name"] for section in data["sections"] for row in section["rows"]]
    assert "openpi, 16 envs vs Arena-style" in names
    assert all(name.startswith(("openpi, ", "memory copy bandwidth")) for name in names), names
    capsys.readouterr()
    assert main(["bench", "--quick", "--adapter", "nosuch"]) == 2
    assert "unknown adapter(s) ['nosuch']" in capsys.readouterr().err
    assert main(["bench", "--from-json", str(path), "--adapter", "openpi"]) == 2
    assert "it takes only --markdown" in capsys.readouterr().err


def test_one_section_and_unknown_sections(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--section", "codecs"]) == 0
    out = capsys.readouterr().out
    assert "\ncodecs " in out and "\nscheduler " not in out
    assert main(["bench", "--section", "nosuch"]) == 2
    assert "unknown section(s) ['nosuch']" in capsys.readouterr().err


def _two_rows(settings: BenchSettings) -> list[Row]:
    return [Row("extra", "fast", 1e-6, 4e-6, "slow way", {"floor_s": 5e-7}), Row("extra", "slow", 2.0, 1.0, "x")]


def _skipped(settings: BenchSettings) -> list[Row]:
    raise SectionSkipped("needs something not installed")


def test_a_section_is_a_function_and_one_registration_line() -> None:
    sections = {"extra": f"{__name__}:_two_rows", "missing": f"{__name__}:_skipped"}
    results = run_sections(sections, BenchSettings(quick=True))
    assert [r.name for r in results] == ["extra", "missing"]
    assert [row.ratio for row in results[0].rows] == [4.0, 0.5]
    assert results[1].rows == [] and results[1].skipped == "needs something not installed"
    assert load_section(f"{__name__}:_two_rows") is _two_rows
    from arena_adapters.bench.tables import format_table

    table = format_table(results)
    assert "4.00x" in table and "0.50x" in table and "floor 0.5 us" in table
    assert "(skipped)" in table and "needs something not installed" in table


def test_against_arena_separates_the_env_from_what_a_client_costs() -> None:
    from arena_adapters.bench.end_to_end import Drive, against_arena

    def per_step(ms: float) -> Drive:
        return Drive(ms / 1e3, 64)

    figures = against_arena(ours=per_step(10.0), arena=per_step(29.0), local=per_step(5.8), env_alone=per_step(5.0))
    assert figures == {"limit_vs_arena": 5.0, "zero_cost_bound": 5.8, "cost_vs_arena": 4.8}
    noisy = against_arena(ours=per_step(4.9), arena=per_step(29.0), local=per_step(5.8), env_alone=per_step(5.0))
    assert "cost_vs_arena" not in noisy and noisy["zero_cost_bound"] == 5.8
    from arena_adapters.bench.rows import SectionResult
    from arena_adapters.bench.tables import format_table

    row = Row("end_to_end", "openpi, 64 envs vs Arena-style", 10.0 / 64e3, 29.0 / 64e3, "Arena-style", figures)
    table = format_table([SectionResult("end_to_end", [row], None, 1.0)])
    assert "local adapter 5.00x, a client costing nothing 5.80x" in table
    assert "cost per step beyond the env: Arena-style / ours 4.80x" in table


@pytest.mark.parametrize("double_encoded", [False, True], ids=["openvla", "oft"])
def test_openvla_server_parts_time_the_servers_own_decode(monkeypatch: pytest.MonkeyPatch, double_encoded: bool) -> None:
    """The breakdown's server decode is the decode the reference server runs on a body (its route's),
    not another JSON parser's: a parser the server does not use would misstate both the server's
    parts and, by difference, ``transfer``."""
    import numpy as np
    from arena_adapters_openvla import codec, server

    from arena_adapters.bench import end_to_end
    from arena_adapters.envs.expert_server import served_expert

    observation = {"image": np.zeros((224, 224, 3), np.uint8), "instruction": "reach"}
    request = codec.encode_double(observation) if double_encoded else codec.encode(observation)
    decoded: list[int] = []
    create_app = server.create_app

    def counting_app(*args: Any, **kwargs: Any) -> Any:
        route = create_app(*args, **kwargs)
        decode = route.decode

        def counted(body: bytes) -> Any:
            decoded.append(len(body))
            return decode(body)

        route.decode = counted
        return route

    monkeypatch.setattr(server, "create_app", counting_app)
    parts = end_to_end._server_parts("openvla", served_expert("openvla"), request)
    assert decoded and set(decoded) == {len(request)}
    assert set(parts) == {"server_decode", "server_policy", "server_encode"}
    assert parts["server_decode"] > 0 and parts["server_policy"] >= 0
    assert parts["server_encode"] >= 0  # a difference of medians: the OFT form's is within their noise


def test_the_full_plans_warm_up_past_the_first_refill() -> None:
    """Every env is due at step 0 and those not reset by then refill together at step 8, the
    default ``execute_steps``: the warm-up covers that refill, whose one-off host allocations
    would otherwise fall in the measured window of the large sizes."""
    from arena_adapters.bench.end_to_end import ADAPTERS, FULL, FULL_CUDA
    from arena_adapters.envs.expert_server import served_expert

    for adapter in ADAPTERS:
        execute_steps = int(served_expert(adapter).client_options.get("execute_steps", 8))
        assert FULL.warmup > execute_steps and FULL_CUDA.warmup > execute_steps, adapter
