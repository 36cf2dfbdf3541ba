from django.urls import include, path

urlpatterns: list[object] = [
    path("sse/", include("tests.support.sse_urls")),
]
