"""Output of the courier webhook (documentation only: the input is the provider's own JSON, read raw)."""

from rest_framework import serializers


class WebhookAck(serializers.Serializer):
    status = serializers.CharField(help_text="applied (moved the delivery), recorded (kept, not applied) or duplicate.")
    event_id = serializers.CharField()
    applied = serializers.BooleanField()
    note = serializers.CharField(allow_blank=True)


class ErrorOutput(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()
