"""The JSON-RPC URLs AFE's clients call, matched exactly (no slash-append or login redirect).

A server string given with a trailing slash makes the clients ask for
``//afe/server/...``; the leading ``/*`` accepts that too.
"""
from django.urls import re_path

from .methods import AFE_METHODS, TKO_METHODS
from .views import RpcEndpoint

afe_endpoint = RpcEndpoint(AFE_METHODS)
tko_endpoint = RpcEndpoint(TKO_METHODS)

urlpatterns = [
    re_path(r"^(?:/*)afe/server/(?:noauth/)?rpc/?$", afe_endpoint, name="afe-rpc"),
    re_path(r"^(?:/*)new_tko/server/(?:noauth/)?rpc/?$", tko_endpoint, name="tko-rpc"),
]
