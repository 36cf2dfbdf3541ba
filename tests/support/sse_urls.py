from django.urls import path

from . import sse_views

urlpatterns = [
    path("<str:alias>/stream/<str:channels>/", sse_views.stream),
    path("<str:alias>/public/<str:channels>/", sse_views.public_stream),
    path("<str:alias>/publish/<str:channel>/", sse_views.publish),
    path("<str:alias>/flood/<str:channel>/", sse_views.flood),
    path("<str:alias>/state/", sse_views.state),
    path("revoke/<str:channel>/", sse_views.revoke),
]
