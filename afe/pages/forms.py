"""The pages' forms: list filters (never an error page for garbage), lock reasons, job creation."""
from __future__ import annotations

import re
from typing import Any

from django import forms
from django.conf import settings

from afe.models import ControlType, DroneSet, Host, Label, Priority, RebootAfter, RebootBefore

DATE_FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"]


class JobFilterForm(forms.Form):
    """Jobs list filters; a bad value is reported next to its field and ignored."""

    owner = forms.CharField(required=False, max_length=255, help_text="Empty: every owner.")
    name = forms.CharField(required=False, max_length=255, label="Name contains")
    state = forms.ChoiceField(required=False, choices=[
        ("", "All"), ("queued", "Queued"), ("running", "Running"), ("finished", "Finished")])
    kind = forms.ChoiceField(required=False, label="Type", choices=[
        ("", "All"), ("parent", "Parent"), ("child", "Child")])
    created_after = forms.DateTimeField(required=False, input_formats=DATE_FORMATS,
                                        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))
    created_before = forms.DateTimeField(required=False, input_formats=DATE_FORMATS,
                                         widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))

    def value(self, name: str) -> Any:
        """The cleaned value of ``name``, or None when it was missing or bad."""
        if not hasattr(self, "cleaned_data"):
            self.is_valid()
        return self.cleaned_data.get(name) if name not in self.errors else None


class HostFilterForm(forms.Form):
    """Hosts list filters; a bad value is reported next to its field and ignored."""

    hostname = forms.CharField(required=False, max_length=255, label="Hostname contains")
    status = forms.ChoiceField(required=False, choices=[("", "Any")] + list(Host.Status.choices))
    label = forms.CharField(required=False, max_length=255, widget=forms.TextInput(attrs={"list": "label-names"}))
    locked = forms.ChoiceField(required=False, choices=[("", "Any"), ("yes", "Locked"), ("no", "Unlocked")])
    mine = forms.BooleanField(required=False, label="Only hosts I may use")

    value = JobFilterForm.value


LOCK_REASONS = [
    "Device is under test", "Device is recovering", "Device is an excluded resource", "Device is defective",
]


class LockForm(forms.Form):
    lock_reason = forms.CharField(max_length=4096, strip=True, label="Lock reason")


def _split(text: str) -> list[str]:
    """Names separated by commas, spaces or new lines."""
    return [part for part in re.split(r"[\s,]+", text or "") if part]


def _enum_choices(enum: Any, blank: str | None = None) -> list[tuple[Any, str]]:
    choices = [(str(value), label) for value, label in enum.choices]
    return ([("", blank)] if blank is not None else []) + choices


class JobCreateForm(forms.Form):
    """What the create-job page asks for; ``Job.create`` does the real checking."""

    name = forms.CharField(max_length=255)
    priority = forms.ChoiceField(choices=_enum_choices(Priority), initial=str(Priority.DEFAULT.value))
    control_type = forms.ChoiceField(label="Type", choices=_enum_choices(ControlType),
                                     initial=str(ControlType.CLIENT.value), widget=forms.RadioSelect)
    control_file = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}),
                                   strip=False, help_text="Paste the control file, or upload one below. A client control file "
                                             "is Python unless its first line starts with #! (e.g. #!/bin/sh).")
    control_upload = forms.FileField(required=False, label="Control file upload")
    hosts = forms.MultipleChoiceField(required=False, widget=forms.SelectMultiple(attrs={"size": 8}),
                                      help_text="Specific hosts (Ctrl/⌘-click for several).")
    meta_hosts = forms.CharField(required=False, label="Metahosts",
                                 help_text="Any N hosts with a label: “2*board:x, pool:a”.")
    one_time_hosts = forms.CharField(required=False, label="One-time hosts",
                                     help_text="Hostnames not in AFE, comma or space separated.")
    hostless = forms.BooleanField(required=False, help_text="A server-side job on no host (a suite).")
    dependencies = forms.CharField(required=False, help_text="Label names every host must have.")
    synch_count = forms.IntegerField(required=False, min_value=1, max_value=100_000)
    reboot_before = forms.ChoiceField(required=False, choices=_enum_choices(RebootBefore, "(my default)"))
    reboot_after = forms.ChoiceField(required=False, choices=_enum_choices(RebootAfter, "(my default)"))
    run_verify = forms.BooleanField(required=False)
    run_reset = forms.BooleanField(required=False, initial=True)
    parse_failed_repair = forms.BooleanField(required=False, label="Include failed repair results")
    timeout_mins = forms.IntegerField(required=False, min_value=1, max_value=525_600, label="Timeout (minutes)")
    max_runtime_mins = forms.IntegerField(required=False, min_value=1, max_value=525_600,
                                          label="Max runtime (minutes)")
    email_list = forms.CharField(required=False, max_length=250)
    drone_set = forms.ChoiceField(required=False)

    #: ``Job.create``'s error keys that belong to another field of this form.
    ERROR_FIELDS = {"parent_job_id": None, "arguments": "hosts", "owner": None, "keyvals": None}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["hosts"].choices = [(h, h) for h in Host.valid_objects.values_list("hostname", flat=True)]
        self.fields["drone_set"].choices = [("", "(default)")] + [
            (n, n) for n in DroneSet.objects.order_by("name").values_list("name", flat=True)]
        self.label_names = list(Label.valid_objects.values_list("name", flat=True))

    def clean_control_upload(self) -> str | None:
        upload = self.cleaned_data.get("control_upload")
        if not upload:
            return None
        limit = settings.CONTROL_FILE_MAX_BYTES
        data = upload.read(limit + 1)
        if len(data) > limit:
            raise forms.ValidationError(f"The file is larger than {limit} bytes (CONTROL_FILE_MAX_BYTES).")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise forms.ValidationError("The file is not UTF-8 text.") from None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("control_upload"):
            data["control_file"] = data["control_upload"]
        if not (data.get("control_file") or "").strip() and "control_upload" not in self.errors:
            self.add_error("control_file", "Paste or upload a control file.")
        return data

    def job_arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``Job.create`` (without the owner)."""
        data = self.cleaned_data

        def optional_int(name: str) -> int | None:
            return int(data[name]) if data.get(name) not in (None, "") else None

        return {
            "name": data["name"],
            "control_file": data["control_file"],
            "control_type": int(data["control_type"]),
            "priority": int(data["priority"]),
            "hosts": list(data.get("hosts") or []),
            "meta_hosts": _split(data.get("meta_hosts", "")),
            "one_time_hosts": _split(data.get("one_time_hosts", "")),
            "hostless": bool(data.get("hostless")),
            "dependencies": _split(data.get("dependencies", "")),
            "synch_count": data.get("synch_count"),
            "reboot_before": optional_int("reboot_before"),
            "reboot_after": optional_int("reboot_after"),
            "run_verify": bool(data.get("run_verify")),
            "run_reset": bool(data.get("run_reset")),
            "parse_failed_repair": bool(data.get("parse_failed_repair")),
            "timeout_mins": data.get("timeout_mins"),
            "max_runtime_mins": data.get("max_runtime_mins"),
            "email_list": data.get("email_list") or "",
            "drone_set": data.get("drone_set") or None,
        }

    def add_model_errors(self, errors: dict[str, list[str]]) -> None:
        """Put ``Job.create``'s errors next to the fields they name (the rest above the form)."""
        for key, messages in errors.items():
            target = self.ERROR_FIELDS.get(key, key)
            if target not in self.fields:
                target = None
            for message in messages:
                self.add_error(target, message if target else f"{key}: {message}" if key != "__all__" else message)
