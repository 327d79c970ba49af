"""The service commands of the command line against the API on a real port."""

from __future__ import annotations

TOKEN = "unit-token"  # as in tests/unit/conftest.py


def test_cli_submit_status_cancel_fetch(live_api, tmp_path, monkeypatch, capsys):
    from scalespace.cli import main
    from scalespace.config import get_settings

    monkeypatch.setenv("SCALESPACE_API_URL", live_api)
    monkeypatch.setenv("SCALESPACE_API_TOKEN", TOKEN)
    get_settings.cache_clear()
    try:
        job_file = tmp_path / "job.yaml"
        job_file.write_text("kind: sample\nprocess: vp\ndata: digits\nn: 4\nsteps: 5\n")
        assert main(["submit", str(job_file), "--lane", "batch", "--key", "cli-1"]) == 0
        job_id = capsys.readouterr().out.strip()
        assert main(["status", job_id]) == 0 and f"{job_id} sample queued" in capsys.readouterr().out
        assert main(["cancel", job_id]) == 0 and "cancelled" in capsys.readouterr().out
        assert main(["fetch", job_id, str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is cancelled, it has no results" in err
        job_file.write_text("kind: sample\nprocess: vp\ndata: digits\nn: 0\n")
        assert main(["submit", str(job_file)]) == 2 and "spec.n:" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
