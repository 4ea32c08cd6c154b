"""TKO, the results database (spec afe-frontend.md §6.1), with TKO's ``tko_*`` tables.

The parse step (``drones.parse``) writes these rows from a job's results
directory; the scheduler reads them for its e-mails and the TKO pages query
them. Column names are TKO's: primary keys are ``<table>_idx`` and foreign
keys keep TKO's column names (``job_idx``, ``machine_idx``, ``kernel_idx``,
``status``, ``test_idx``, ``invalidates_test_idx``).

Deviations from TKO, all additive: the iteration tables get a surrogate ``id``
(Django needs a primary key; TKO's have none), and ``machine_idx`` may be NULL
on jobs and tests of hostless jobs.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from django.db import models

#: TKO's status words and ids, in the order TKO's migrations inserted them
#: (001_initial_db: NOSTATUS..ALERT, 005_add_testna_status, 012_add_running_status).
#: Every AFE/TKO database has these ids; the 0003_tko migration seeds them.
STATUS_IDS: Final[Mapping[str, int]] = MappingProxyType({
    "NOSTATUS": 1, "ERROR": 2, "ABORT": 3, "FAIL": 4, "WARN": 5,
    "GOOD": 6, "ALERT": 7, "TEST_NA": 8, "RUNNING": 9,
})


class TkoMachine(models.Model):
    """A machine tests ran on; ``machine_group`` is shown as its platform."""

    machine_idx = models.AutoField(primary_key=True)
    hostname = models.CharField(max_length=255, unique=True)
    machine_group = models.CharField(max_length=240, blank=True, default="")
    owner = models.CharField(max_length=240, blank=True, default="")

    class Meta:
        db_table = "tko_machines"

    def __str__(self) -> str:
        return self.hostname


class TkoKernel(models.Model):
    """The kernel a test ran on (``UNKNOWN`` unless the status log names one)."""

    kernel_idx = models.AutoField(primary_key=True)
    kernel_hash = models.CharField(max_length=105, db_index=True)
    base = models.CharField(max_length=90)
    printable = models.CharField(max_length=300)

    class Meta:
        db_table = "tko_kernels"

    def __str__(self) -> str:
        return self.printable


class TkoPatch(models.Model):
    kernel = models.ForeignKey(TkoKernel, on_delete=models.CASCADE, db_column="kernel_idx",
                               related_name="patches")
    name = models.CharField(max_length=240, blank=True, default="")
    url = models.CharField(max_length=900, blank=True, default="")
    hash = models.CharField(max_length=105, blank=True, default="")

    class Meta:
        db_table = "tko_patches"


class TkoStatus(models.Model):
    """A status word (``GOOD``, ``FAIL``, ...) with TKO's fixed id (``STATUS_IDS``)."""

    status_idx = models.AutoField(primary_key=True)
    word = models.CharField(max_length=30)

    class Meta:
        db_table = "tko_status"

    def __str__(self) -> str:
        return self.word

    @classmethod
    def ids_by_word(cls) -> dict[str, int]:
        """``{word: status_idx}`` for every status, creating missing rows with TKO's ids.

        The migration seeds the table; this keeps the parser working on a
        database whose rows were flushed (as transactional tests do).
        """
        ids = dict(cls.objects.values_list("word", "status_idx"))
        missing = [cls(status_idx=idx, word=word) for word, idx in STATUS_IDS.items() if word not in ids]
        if missing:
            cls.objects.bulk_create(missing, ignore_conflicts=True)
            ids = dict(cls.objects.values_list("word", "status_idx"))
            for word in STATUS_IDS.keys() - ids.keys():  # its id is taken by something else
                ids[word] = cls.objects.create(word=word).status_idx
        return ids


class TkoJob(models.Model):
    """One parsed results directory; ``tag`` (``<afe_job_id>-<owner>/<subdir>``) is its identity."""

    job_idx = models.AutoField(primary_key=True)
    tag = models.CharField(max_length=100, unique=True)
    label = models.CharField(max_length=300, blank=True, default="")
    username = models.CharField(max_length=240, blank=True, default="")
    machine = models.ForeignKey(TkoMachine, null=True, blank=True, on_delete=models.PROTECT,
                                db_column="machine_idx", related_name="jobs")
    queued_time = models.DateTimeField(null=True, blank=True)
    started_time = models.DateTimeField(null=True, blank=True)
    finished_time = models.DateTimeField(null=True, blank=True)
    afe_job_id = models.IntegerField(null=True, blank=True, db_index=True)
    afe_parent_job_id = models.IntegerField(null=True, blank=True, db_index=True)
    build = models.CharField(max_length=255, null=True, blank=True)
    build_version = models.CharField(max_length=255, null=True, blank=True)
    suite = models.CharField(max_length=40, null=True, blank=True)
    board = models.CharField(max_length=40, null=True, blank=True)

    class Meta:
        db_table = "tko_jobs"

    def __str__(self) -> str:
        return self.tag


class TkoJobKeyval(models.Model):
    job = models.ForeignKey(TkoJob, on_delete=models.CASCADE, related_name="keyvals")
    key = models.CharField(max_length=90)
    value = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        db_table = "tko_job_keyvals"


class TkoTaskReference(models.Model):
    """Which scheduler task (an AFE job) produced a TKO job."""

    class ReferenceType(models.TextChoices):
        SKYLAB = "skylab"
        AFE = "afe"

    reference_type = models.CharField(max_length=10, choices=ReferenceType.choices)
    tko_job = models.ForeignKey(TkoJob, on_delete=models.CASCADE, db_column="tko_job_idx",
                                related_name="task_references")
    task_id = models.CharField(max_length=20, blank=True, default="")
    parent_task_id = models.CharField(max_length=20, blank=True, default="")

    class Meta:
        db_table = "tko_task_references"


class TkoTest(models.Model):
    """One test of a job: its final status, reason and timing."""

    test_idx = models.AutoField(primary_key=True)
    job = models.ForeignKey(TkoJob, on_delete=models.CASCADE, db_column="job_idx", related_name="tests")
    test = models.CharField(max_length=300)
    subdir = models.CharField(max_length=300, null=True, blank=True)
    kernel = models.ForeignKey(TkoKernel, on_delete=models.PROTECT, db_column="kernel_idx",
                               related_name="tests")
    status = models.ForeignKey(TkoStatus, on_delete=models.PROTECT, db_column="status",
                               related_name="tests")
    reason = models.CharField(max_length=4096, blank=True, default="")
    machine = models.ForeignKey(TkoMachine, null=True, blank=True, on_delete=models.PROTECT,
                                db_column="machine_idx", related_name="tests")
    invalid = models.BooleanField(default=False)
    started_time = models.DateTimeField(null=True, blank=True)
    finished_time = models.DateTimeField(null=True, blank=True)
    invalidates_test = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                                         db_column="invalidates_test_idx", related_name="invalidated_by")

    class Meta:
        db_table = "tko_tests"

    def __str__(self) -> str:
        return f"{self.test} ({self.subdir or '----'})"


class TkoTestAttribute(models.Model):
    """A test attribute; the parser's rows have ``user_created=False`` and are replaced on reparse."""

    test = models.ForeignKey(TkoTest, on_delete=models.CASCADE, db_column="test_idx", related_name="attributes")
    attribute = models.CharField(max_length=90)
    value = models.CharField(max_length=1024, blank=True, default="")
    user_created = models.BooleanField(default=False)

    class Meta:
        db_table = "tko_test_attributes"


class TkoIterationAttribute(models.Model):
    test = models.ForeignKey(TkoTest, on_delete=models.CASCADE, db_column="test_idx",
                             related_name="iteration_attributes")
    iteration = models.IntegerField()
    attribute = models.CharField(max_length=90)
    value = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        db_table = "tko_iteration_attributes"


class TkoIterationResult(models.Model):
    """A numeric (perf) keyval of one iteration; NaN and infinities are stored as NULL."""

    test = models.ForeignKey(TkoTest, on_delete=models.CASCADE, db_column="test_idx",
                             related_name="iteration_results")
    iteration = models.IntegerField()
    attribute = models.CharField(max_length=90)
    value = models.FloatField(null=True, blank=True)

    class Meta:
        db_table = "tko_iteration_result"


class TkoIterationPerfValue(models.Model):
    test = models.ForeignKey(TkoTest, on_delete=models.CASCADE, db_column="test_idx",
                             related_name="perf_values")
    iteration = models.IntegerField()
    description = models.CharField(max_length=256)
    value = models.FloatField(null=True, blank=True)
    stddev = models.FloatField(null=True, blank=True)
    units = models.CharField(max_length=32, blank=True, default="")
    higher_is_better = models.BooleanField(default=True)
    graph = models.CharField(max_length=256, null=True, blank=True)

    class Meta:
        db_table = "tko_iteration_perf_value"


class TkoTestLabel(models.Model):
    """A user-applied label on tests (TKO's test-label RPCs); the parser keeps them on reparse."""

    name = models.CharField(max_length=80, unique=True)
    description = models.TextField(blank=True, default="")
    tests = models.ManyToManyField(TkoTest, blank=True, through="TkoTestLabelTest", related_name="labels")

    class Meta:
        db_table = "tko_test_labels"

    def __str__(self) -> str:
        return self.name


class TkoTestLabelTest(models.Model):
    """The ``tko_test_labels_tests`` pivot (``testlabel_id``, ``test_id``)."""

    testlabel = models.ForeignKey(TkoTestLabel, on_delete=models.CASCADE)
    test = models.ForeignKey(TkoTest, on_delete=models.CASCADE)

    class Meta:
        db_table = "tko_test_labels_tests"
        constraints = [models.UniqueConstraint(fields=["testlabel", "test"], name="tko_test_labels_tests_uniq")]
