import pytest

from chat.intents import EmptyImageCommand, parse_image_request


@pytest.mark.parametrize(
    ("text", "prompt"),
    [
        ("/image a red fox", "a red fox"),
        ("/IMAGE   castle at dusk  ", "castle at dusk"),
        ("/image\nmultiline\nprompt", "multiline\nprompt"),
        ("draw a cat", "cat"),
        ("Draw me a lighthouse in a storm!", "lighthouse in a storm"),
        ("please draw a cat", "cat"),
        ("can you draw a dragon?", "dragon"),
        ("generate an image of a mountain lake", "mountain lake"),
        ("Create a picture of two robots playing chess", "two robots playing chess"),
        ("make me a photo of a sunset", "sunset"),
        ("a picture of a happy dog", "happy dog"),
        ("kedi çiz", "kedi"),
        ("bir kedi resmi çiz", "kedi"),
        ("Bir kedi resmi çizer misin?", "kedi"),
        ("lütfen deniz kenarında bir ev çiz", "deniz kenarında bir ev"),
        ("uzayda bir astronot görseli oluştur", "uzayda bir astronot"),
    ],
)
def test_picture_requests_are_recognized(text, prompt):
    request = parse_image_request(text)
    assert request is not None
    assert request.prompt == prompt


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "what can you do?",
        "I like drawings",
        "merhaba",
        "/imagine something",
        "the image of my father is blurry in my mind",
    ],
)
def test_other_messages_are_not_picture_requests(text):
    assert parse_image_request(text) is None


@pytest.mark.parametrize("text", ["/image", "/image   ", "/image ..."])
def test_a_bare_image_command_is_an_error(text):
    with pytest.raises(EmptyImageCommand):
        parse_image_request(text)
