from rest_framework import serializers


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Bearer <token>`. Never put it in a URL.")
    expiry = serializers.DateTimeField(allow_null=True, help_text="Null: valid until revoked.")


class MeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    username = serializers.CharField()


class TokenEntrySerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="Names the token for DELETE /v1/auth/tokens/{id}; it is not the token.")
    created_at = serializers.DateTimeField(source="created")
    expiry = serializers.DateTimeField(allow_null=True, help_text="Null: valid until revoked.")
    current = serializers.BooleanField(help_text="Whether this is the token of this request.")


class TokenPageSerializer(serializers.Serializer):
    results = TokenEntrySerializer(many=True)
    next = serializers.URLField(allow_null=True)
