from django.urls import include, path

urlpatterns: list[object] = [
    path("sse/", include("tests.sse_urls")),
]
