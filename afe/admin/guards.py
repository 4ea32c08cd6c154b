"""What every ModelAdmin of the lab shares: no 500 for garbage, refusals with a message.

``GuardedAdmin`` is mixed into every ModelAdmin of the project (afe, scheduler,
drones). It

* checks object ids and action selections before they reach a query (a value
  that is not an id of the model, or out of the column's range, is "no such
  object" / "invalid selection", never an OverflowError);
* runs each admin view in a savepoint and turns the errors garbage can still
  provoke (ValueError, OverflowError, ValidationError, DataError) into an
  error message and a redirect (or a 400 when there is nowhere to go), with
  every write of the failed request rolled back;
* caps the length of a changelist search;
* gives forms whose fields answer "not a valid choice" to out-of-range ids;
* lets a subclass refuse deleting some objects (``delete_refusal`` and
  ``bulk_delete_refusal``): the delete page and "Delete selected" then say
  why, and delete nothing.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import ForeignKeyRawIdWidget, ManyToManyRawIdWidget
from django.core.exceptions import ValidationError
from django.db import DataError, connections, models, router, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.text import Truncator

#: Errors that garbage in a request can still raise deep inside Django or a database driver.
GARBAGE_ERRORS: tuple[type[BaseException], ...] = (ValueError, OverflowError, ValidationError, DataError)

#: A changelist search longer than this is refused (SQLite gives up on long LIKE patterns).
SEARCH_MAX_LENGTH = 1000

#: How many objects a refusal message names before it says "and N more".
NAMED_IN_MESSAGE = 10


# --------------------------------------------------------------------------- ids


def _integer_range(field: models.Field, alias: str) -> tuple[int | None, int | None]:
    target = getattr(field, "target_field", None) if field.is_relation else field
    target = target or field
    return connections[alias].ops.integer_field_range(target.get_internal_type())


def clean_pk(model: type[models.Model], value: Any) -> Any:
    """``value`` as a primary key of ``model``; raises ValidationError if it cannot be one."""
    field = model._meta.pk
    if isinstance(value, str) and "\x00" in value:
        raise ValidationError(f"“{value[:40]}” is not a valid id.")
    python_value = field.to_python(value)  # ValidationError for text that is not a number
    if python_value is None or python_value == "":
        raise ValidationError("An empty id is not a valid id.")
    if isinstance(python_value, int):
        low, high = _integer_range(field, router.db_for_read(model))
        if (low is not None and python_value < low) or (high is not None and python_value > high):
            raise ValidationError(f"“{str(value)[:40]}” is out of the range of ids.")
    return python_value


def name_objects(objs: list[Any], total: int | None = None) -> str:
    """“a”, “b” and 3 more — for messages that name what was refused."""
    total = len(objs) if total is None else total
    shown = ", ".join(f"“{obj}”" for obj in objs[:NAMED_IN_MESSAGE])
    rest = total - min(len(objs), NAMED_IN_MESSAGE)
    return f"{shown} and {rest} more" if rest > 0 else shown


# --------------------------------------------------------------------------- forms


def _choice_error(field: forms.Field, value: Any) -> ValidationError:
    if "invalid_pk_value" in field.error_messages:
        return ValidationError(field.error_messages["invalid_pk_value"], code="invalid_pk_value",
                               params={"pk": Truncator(str(value)).chars(40)})
    return ValidationError(field.error_messages.get("invalid_choice", "Select a valid choice."),
                           code="invalid_choice", params={"value": Truncator(str(value)).chars(40)})


def _overflow_safe(field: forms.Field) -> Callable[[Any], Any]:
    clean = field.clean

    @wraps(clean)
    def safe_clean(value: Any) -> Any:
        try:
            return clean(value)
        except (OverflowError, DataError):
            raise _choice_error(field, value) from None

    return safe_clean


class SafeModelForm(forms.ModelForm):
    """A ModelForm whose fields refuse out-of-range ids as invalid choices instead of raising."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.clean = _overflow_safe(field)  # type: ignore[method-assign]


class _SafeRawIdMixin:
    def label_and_url_for_value(self, value: Any) -> tuple[str, str]:
        try:
            return super().label_and_url_for_value(value)  # type: ignore[misc]
        except (OverflowError, DataError, ValueError, ValidationError):
            return "", ""


class SafeForeignKeyRawIdWidget(_SafeRawIdMixin, ForeignKeyRawIdWidget):
    pass


class SafeManyToManyRawIdWidget(_SafeRawIdMixin, ManyToManyRawIdWidget):
    pass


def _safe_widget(formfield: forms.Field | None) -> forms.Field | None:
    if formfield is not None:
        widget = formfield.widget
        if type(widget) is ForeignKeyRawIdWidget:
            widget.__class__ = SafeForeignKeyRawIdWidget
        elif type(widget) is ManyToManyRawIdWidget:
            widget.__class__ = SafeManyToManyRawIdWidget
    return formfield


class SafeFormFieldsMixin:
    """Admin (or inline) whose forms are SafeModelForms with safe raw-id widgets."""

    form = SafeModelForm

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        return _safe_widget(super().formfield_for_foreignkey(db_field, request, **kwargs))  # type: ignore[misc]

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        return _safe_widget(super().formfield_for_manytomany(db_field, request, **kwargs))  # type: ignore[misc]


class SafeTabularInline(SafeFormFieldsMixin, admin.TabularInline):
    pass


# --------------------------------------------------------------------------- delete refusals


@admin.action(permissions=["delete"], description=django_delete_selected.short_description)
def delete_selected(modeladmin: GuardedAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    """Django's "Delete selected", unless the admin refuses deleting part of the selection."""
    refusal = modeladmin.bulk_delete_refusal(request, queryset)
    if refusal:
        modeladmin.message_user(request, refusal, messages.ERROR)
        return None
    # Every selected row was just checked: the confirmation page need not ask again, row by row.
    request._afe_checked_deletable = {  # type: ignore[attr-defined]
        (modeladmin.model._meta.label, pk) for pk in queryset.values_list("pk", flat=True)
    }
    return django_delete_selected(modeladmin, request, queryset)


# --------------------------------------------------------------------------- the admin mixin


class GuardedAdmin(SafeFormFieldsMixin, admin.ModelAdmin):
    """A ModelAdmin that answers garbage with a message instead of a 500, and may refuse deletes."""

    search_max_length = SEARCH_MAX_LENGTH

    # -- refusals (override in subclasses)

    def delete_refusal(self, obj: models.Model) -> str | None:
        """Why ``obj`` may not be deleted (a whole sentence for the user), or None."""
        return None

    def bulk_delete_refusal(self, request: HttpRequest, queryset: QuerySet) -> str | None:
        """Why the selection may not be deleted, or None; the default asks ``delete_refusal`` per row."""
        if type(self).delete_refusal is GuardedAdmin.delete_refusal:
            return None
        refused = [obj for obj in queryset if self.delete_refusal(obj)]
        if not refused:
            return None
        return (f"Nothing was deleted: {self.model._meta.verbose_name_plural} "
                f"{name_objects(refused)} cannot be deleted. {self.delete_refusal(refused[0])}")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        checked = getattr(request, "_afe_checked_deletable", ())
        if obj is not None and (obj._meta.label, obj.pk) not in checked and self.delete_refusal(obj):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            _, name, description = actions["delete_selected"]
            actions["delete_selected"] = (delete_selected, name, description)
        return actions

    # -- ids and selections

    def get_object(self, request: HttpRequest, object_id: Any, from_field: str | None = None) -> Any:
        if from_field is None:
            try:
                clean_pk(self.model, object_id)
            except (ValidationError, ValueError, TypeError):
                return None
        try:
            return super().get_object(request, object_id, from_field)
        except (OverflowError, DataError):
            return None

    def response_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        bad = []
        for value in selected:
            try:
                clean_pk(self.model, value)
            except (ValidationError, ValueError, TypeError):
                bad.append(value)
        if bad:
            self.message_user(
                request,
                f"Invalid selection: {', '.join(f'“{Truncator(v).chars(40)}”' for v in bad[:NAMED_IN_MESSAGE])} "
                f"{'is not an id' if len(bad) == 1 else 'are not ids'} of any "
                f"{self.model._meta.verbose_name}. No items have been changed.",
                messages.ERROR,
            )
            return None
        return super().response_action(request, queryset)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        if len(search_term) > self.search_max_length:
            self.message_user(
                request,
                f"The search term is {len(search_term)} characters long; at most "
                f"{self.search_max_length} are allowed. Nothing matches it.",
                messages.ERROR,
            )
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)

    # -- views

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        return self._guarded(request, super().changelist_view, extra_context)

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict | None = None) -> HttpResponse:
        return self._guarded(request, super().changeform_view, object_id, form_url, extra_context)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        refusal = self.delete_refusal(obj) if obj is not None else None
        if refusal:
            self.message_user(request, refusal, messages.ERROR)
            return HttpResponseRedirect(self._url_for(obj))
        return self._guarded(request, super().delete_view, object_id, extra_context)

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        return self._guarded(request, super().history_view, object_id, extra_context)

    def _url_for(self, obj: models.Model | None = None) -> str:
        opts = self.model._meta
        try:
            if obj is not None:
                return reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
            return reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist")
        except NoReverseMatch:
            return reverse(f"{self.admin_site.name}:index")

    def _guarded(self, request: HttpRequest, view: Callable[..., HttpResponse], *args: Any) -> HttpResponse:
        """Run ``view`` (and render it) in a savepoint; garbage errors roll back and become a message."""
        storage = getattr(request, "_messages", None)
        queued_before = len(getattr(storage, "_queued_messages", []))
        try:
            with transaction.atomic(using=router.db_for_write(self.model)):
                response = view(request, *args)
                if isinstance(response, TemplateResponse) and not response.is_rendered:
                    response.render()
                return response
        except GARBAGE_ERRORS as exc:
            queued = getattr(storage, "_queued_messages", None)
            if isinstance(queued, list):
                del queued[queued_before:]  # e.g. a "Successfully deleted" that was rolled back
            return self._answer_garbage(request, exc)

    def _answer_garbage(self, request: HttpRequest, exc: BaseException) -> HttpResponse:
        if isinstance(exc, ValidationError):
            detail = "; ".join(exc.messages)
        else:
            detail = str(exc) or type(exc).__name__
        detail = Truncator(detail).chars(300)
        if request.method == "POST":
            message = f"The request was refused and nothing was changed: {detail}"
            target = request.get_full_path() if isinstance(exc, ValidationError) else self._url_for()
        else:
            message = f"The request could not be answered (a parameter is malformed or out of range): {detail}"
            target = self._url_for()
        plain_changelist = request.path == target and not request.GET
        if request.method != "POST" and (plain_changelist or request.get_full_path() == target):
            return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        self.message_user(request, message, messages.ERROR)
        return HttpResponseRedirect(target)


def harden(model_admin_class: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    """``model_admin_class`` with GuardedAdmin mixed in (itself if it already has it)."""
    if issubclass(model_admin_class, GuardedAdmin):
        return model_admin_class
    return type(model_admin_class.__name__, (GuardedAdmin, model_admin_class),
                {"__module__": model_admin_class.__module__, "__doc__": model_admin_class.__doc__})


def harden_registered(site: admin.AdminSite, app_labels: set[str]) -> list[str]:
    """Re-register every admin of ``app_labels`` on ``site`` that lacks GuardedAdmin; returns their models."""
    swapped = []
    for model, model_admin in list(site._registry.items()):
        if model._meta.app_label in app_labels and not isinstance(model_admin, GuardedAdmin):
            site.unregister(model)
            site.register(model, harden(type(model_admin)))
            swapped.append(model._meta.label)
    return swapped
