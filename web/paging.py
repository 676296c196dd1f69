"""Pagination of the list pages, and the query string the pager links keep (the filters)."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.http import HttpRequest

from numaportal.bounds import parse_whole

__all__ = ["paginate", "sort_links"]


def paginate(
    request: HttpRequest, items: Any, per_page: int, *, param: str = "page", keys: bool = False
) -> tuple[Page, str]:
    """The requested page of *items* and the request's query string without *param*, for
    ``templates/_pager.html``. A page with two lists pages each by a parameter of its own
    (the host page: ``page`` for its VMs, ``memory_page`` for their memory), so each pager
    keeps the other's place. The page number is ASCII digits (``int()`` takes any Unicode
    digit); anything else, or beyond 64 bits, is the first page, a number past the end the
    last.

    *keys* (a queryset of tens of thousands of rows: the VM list, the change history): the
    page's primary keys are read first, in the queryset's order (narrow rows, an index scan
    for an ordering that has one), then that page's rows alone with their joins. A deep page
    then skips keys, not joined rows: OFFSET 99,950 of a joined, wide row cost seconds."""
    number = parse_whole(request.GET.get(param), minimum=1)
    if keys:
        page = Paginator(items.values_list("pk", flat=True), per_page).get_page(number)
        ids = list(page.object_list)
        rows = {row.pk: row for row in items.filter(pk__in=ids)}
        page.object_list = [rows[pk] for pk in ids if pk in rows]
    else:
        page = Paginator(items, per_page).get_page(number)
    query = request.GET.copy()
    query.pop(param, None)
    return page, query.urlencode()


def sort_links(
    request: HttpRequest, columns: Any, *, param: str = "sort", page_param: str = "page"
) -> dict[str, dict[str, str]]:
    """For each sortable column (its ``param`` word), the link of its heading and how the list
    is sorted by it now: ``{"name": {"url": "?host=hv01&sort=-name", "order": "asc"}}``. The
    link keeps the filters, starts again at the first page, and sorts by the column, or in
    reverse when the list is already sorted by it ascending. ``order`` is "asc", "desc" or ""."""
    current = request.GET.get(param, "")
    query = request.GET.copy()
    query.pop(page_param, None)
    links = {}
    for column in columns:
        order = "asc" if current == column else "desc" if current == f"-{column}" else ""
        query[param] = f"-{column}" if order == "asc" else column
        links[column] = {"url": f"?{query.urlencode()}", "order": order}
    return links
