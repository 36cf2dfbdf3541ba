from django.urls import path

from . import views

app_name = "chat"
urlpatterns = [
    path("", views.index, name="index"),
    path("chat/<slug:room>/", views.room, name="room"),
    path("chat/<slug:room>/messages/", views.post_message, name="post"),
    path("chat/<slug:room>/events/", views.events, name="events"),
]
