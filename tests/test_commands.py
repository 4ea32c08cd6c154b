"""The autoserv and parser command lines of §5.1 (L1)."""
from afe.models import ControlType, Protection, SpecialTask
from scheduler.commands import (
    JobIdentity,
    autoserv_base,
    crashinfo_command,
    job_command,
    parse_command,
    special_task_command,
)

A = "/opt/autoserv"
NICE = ["nice", "-n", "10"]
OWNER = JobIdentity("alice", "nightly", ControlType.CLIENT)


def test_base_command_line_order():
    assert autoserv_base(A, "/r/1-alice/group1", ["a", "b"], OWNER, verbose=True) == [
        *NICE, A, "-p", "-r", "/r/1-alice/group1", "-m", "a,b", "-u", "alice", "-l", "nightly", "-c",
        "--verbose", "--lab", "True",
    ]


def test_job_command_for_a_server_job_with_a_parent():
    server = JobIdentity("alice", "suite child", ControlType.SERVER)
    command = job_command(A, "/r/7-alice/host1", ["host1"], server, "7-alice/host1", "/r/drone_tmp/control.7", 3)
    assert command == [
        *NICE, A, "-p", "-r", "/r/7-alice/host1", "-m", "host1", "-u", "alice", "-l", "suite child", "-s",
        "--lab", "True", "-P", "7-alice/host1", "-n", "/r/drone_tmp/control.7", "--parent_job_id", "3",
        "--verify_job_repo_url",
    ]


def test_hostless_job_has_no_machines_parent_or_repo_check():
    command = job_command(A, "/r/8-bob/hostless", [], JobIdentity("bob", "suite", ControlType.SERVER),
                          "8-bob/hostless", "/r/c", 5)
    assert "-m" not in command and "--parent_job_id" not in command and "--verify_job_repo_url" not in command
    assert command[-4:] == ["-P", "8-bob/hostless", "-n", "/r/c"]


def test_verify_cleanup_reset_with_and_without_an_entry():
    for task, flag in [("Verify", "-v"), ("Cleanup", "--cleanup"), ("Reset", "--reset")]:
        alone = special_task_command(A, "/r/hosts/h/1-x", "h", task, None, [])
        assert alone == [*NICE, A, "-p", "-r", "/r/hosts/h/1-x", "-m", "h", "--verbose", "--lab", "True", flag]
        for_job = special_task_command(A, "/r/hosts/h/1-x", "h", task, OWNER, ["board:x", "pool:a"])
        assert for_job[for_job.index("-u"):for_job.index("-u") + 5] == ["-u", "alice", "-l", "nightly", "-c"]
        assert for_job[-2:] == ["--job-labels", "board:x,pool:a"]


def test_repair_names_the_host_protection():
    command = special_task_command(A, "/w", "h", SpecialTask.Task.REPAIR, None, [], Protection.DO_NOT_REPAIR)
    assert command[-3:] == ["-R", "--host-protection", "DO_NOT_REPAIR"]


def test_provision_lists_the_labels_and_no_job_flags():
    command = special_task_command(A, "/w", "h", "Provision", OWNER, ["cros-version:R2-2"])
    assert "-u" not in command
    assert command[-3:] == ["--provision", "--job-labels", "cros-version:R2-2"]


def test_gather_and_parse_commands():
    assert crashinfo_command(A, "/r/1-a/group1", ["h1", "h2"]) == [
        *NICE, A, "-p", "--pidfile-label=collect_crashinfo", "--use-existing-results", "--collect-crashinfo",
        "-m", "h1,h2", "-r", "/r/1-a/group1",
    ]
    assert parse_command("/opt/parse", "/r/1-a/h1") == [
        *NICE, "/opt/parse", "--detach", "--write-pidfile", "--record-duration", "--suite-report", "-l", "2", "-r",
        "-o", "/r/1-a/h1",
    ]


def test_keyvals_appended_after_a_crash_are_not_written_twice(tmp_path):
    from scheduler import results

    results.write_keyvals(tmp_path, {"job_queued": 1})
    results.append_keyvals_once(tmp_path, {"job_finished": 2})
    results.append_keyvals_once(tmp_path, {"job_finished": 3, "aborted_by": "bob"})
    assert (tmp_path / "keyval").read_text() == "job_queued=1\njob_finished=2\naborted_by=bob\n"
