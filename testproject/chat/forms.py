from django import forms

from .consumers import MAX_NAME_LENGTH


class MessageForm(forms.Form):
    author = forms.CharField(max_length=MAX_NAME_LENGTH)
    text = forms.CharField(max_length=1000)


class RoomForm(forms.Form):
    room = forms.SlugField(max_length=50)
