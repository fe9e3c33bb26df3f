from django.contrib import admin

from .models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("created_at", "role", "text")
    readonly_fields = fields


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "owner", "updated_at")
    search_fields = ("title", "id", "owner__username")
    list_select_related = ("owner",)
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("__str__", "role", "conversation", "created_at")
    list_filter = ("role",)
    search_fields = ("text", "id")
    list_select_related = ("conversation",)
