"""The built-in dataset registry: hub datasets by name, and the datasets embedded in this package.

Plain data, imported by the plugin module (so it imports only ``martlet.records``). Hub ids are
the real ids on Hugging Face (``huggingface``) and ModelScope (``modelscope``) where the dataset
is published there; ``impl`` names a preprocessor in :mod:`martlet_data.preprocess` where the
raw columns need more than format detection.
"""

from __future__ import annotations

from martlet.records import DatasetRecord

CEVAL_SUBJECTS = (
    "accountant advanced_mathematics art_studies basic_medicine business_administration "
    "chinese_language_and_literature civil_servant clinical_medicine college_chemistry "
    "college_economics college_physics college_programming computer_architecture "
    "computer_network discrete_mathematics education_science electrical_engineer "
    "environmental_impact_assessment_engineer fire_engineer high_school_biology "
    "high_school_chemistry high_school_chinese high_school_geography high_school_history "
    "high_school_mathematics high_school_physics high_school_politics "
    "ideological_and_moral_cultivation law legal_professional logic mao_zedong_thought marxism "
    "metrology_engineer middle_school_biology middle_school_chemistry middle_school_geography "
    "middle_school_history middle_school_mathematics middle_school_physics "
    "middle_school_politics modern_chinese_history operating_system physician plant_protection "
    "probability_and_statistics professional_tour_guide sports_science tax_accountant "
    "teacher_qualification urban_and_rural_planner veterinary_medicine"
).split()

CMMLU_SUBJECTS = (
    "agronomy anatomy ancient_chinese arts astronomy business_ethics chinese_civil_service_exam "
    "chinese_driving_rule chinese_food_culture chinese_foreign_policy chinese_history "
    "chinese_literature chinese_teacher_qualification clinical_knowledge "
    "college_actuarial_science college_education college_engineering_hydrology college_law "
    "college_mathematics college_medical_statistics college_medicine computer_science "
    "computer_security conceptual_physics construction_project_management economics education "
    "electrical_engineering elementary_chinese elementary_commonsense "
    "elementary_information_and_technology elementary_mathematics ethnology food_science "
    "genetics global_facts high_school_biology high_school_chemistry high_school_geography "
    "high_school_mathematics high_school_physics high_school_politics human_sexuality "
    "international_law journalism jurisprudence legal_and_moral_basis logical machine_learning "
    "management marketing marxist_theory modern_chinese nutrition philosophy "
    "professional_accounting professional_law professional_medicine professional_psychology "
    "public_relations security_study sociology sports_science traditional_chinese_medicine "
    "virology world_history world_religions"
).split()

P = "martlet_data.preprocess:"


def _hub(
    name: str,
    summary: str,
    *,
    hf: str = "",
    ms: str = "",
    format: str = "",
    impl: str = "",
    subsets: tuple[str, ...] = (),
    splits: tuple[str, ...] = ("train",),
    tags: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
) -> DatasetRecord:
    hub_ids = {k: v for k, v in (("huggingface", hf), ("modelscope", ms)) if v}
    return DatasetRecord(
        name=name,
        summary=summary,
        hub_ids=hub_ids,
        format=format,
        impl=impl,
        subsets=subsets,
        splits=splits,
        tags=tags,
        aliases=aliases,
    )


HUB_DATASETS: tuple[DatasetRecord, ...] = (
    # ------------------------------------------------------------- instruction tuning
    _hub(
        "alpaca-gpt4-en",
        "52k GPT-4 answers to the Alpaca instructions (English)",
        hf="vicgalle/alpaca-gpt4",
        ms="AI-ModelScope/alpaca-gpt4-data-en",
        format="alpaca",
        tags=("sft", "general", "en"),
    ),
    _hub(
        "alpaca-gpt4-zh",
        "GPT-4 answers to the Alpaca instructions translated to Chinese",
        hf="llm-wizard/alpaca-gpt4-data-zh",
        ms="AI-ModelScope/alpaca-gpt4-data-zh",
        format="alpaca",
        tags=("sft", "general", "zh"),
    ),
    _hub(
        "alpaca-cleaned",
        "the original Alpaca data with its known errors cleaned",
        hf="yahma/alpaca-cleaned",
        ms="AI-ModelScope/alpaca-cleaned",
        format="alpaca",
        tags=("sft", "general", "en"),
    ),
    _hub(
        "sharegpt-gpt4",
        "multi-turn ShareGPT conversations with GPT-4 (ModelScope)",
        ms="AI-ModelScope/sharegpt_gpt4",
        format="sharegpt",
        subsets=("default", "V3_format", "zh_38K_format"),
        tags=("sft", "multi-turn", "multilingual"),
    ),
    _hub(
        "sharegpt",
        "ShareGPT conversations in Chinese and English (ModelScope)",
        ms="swift/sharegpt",
        format="sharegpt",
        subsets=("common-zh", "unknow-zh", "common-en"),
        tags=("sft", "multi-turn"),
    ),
    _hub(
        "openhermes-2.5",
        "1M ShareGPT-style conversations, mostly synthetic GPT-4 data",
        hf="teknium/OpenHermes-2.5",
        ms="swift/OpenHermes-2.5",
        format="sharegpt",
        tags=("sft", "general", "en", "huge"),
    ),
    _hub(
        "slimorca",
        "518k GPT-4-checked OpenOrca conversations (ShareGPT format)",
        hf="Open-Orca/SlimOrca",
        ms="swift/SlimOrca",
        format="sharegpt",
        tags=("sft", "general", "en"),
    ),
    _hub(
        "openorca",
        "FLAN questions answered by GPT-4 and GPT-3.5 with system prompts",
        hf="Open-Orca/OpenOrca",
        ms="AI-ModelScope/OpenOrca",
        impl=P + "openorca",
        tags=("sft", "general", "en", "huge"),
    ),
    _hub(
        "ultrachat-200k",
        "200k filtered multi-turn UltraChat dialogues (the Zephyr SFT data)",
        hf="HuggingFaceH4/ultrachat_200k",
        ms="swift/ultrachat_200k",
        format="messages",
        splits=("train_sft", "test_sft"),
        tags=("sft", "multi-turn", "en"),
    ),
    _hub(
        "no-robots",
        "10k instructions and answers written by human annotators",
        hf="HuggingFaceH4/no_robots",
        ms="swift/no_robots",
        format="messages",
        splits=("train", "test"),
        tags=("sft", "human", "en"),
    ),
    _hub(
        "dolly-15k",
        "15k human-written instruction/response pairs from Databricks",
        hf="databricks/databricks-dolly-15k",
        ms="AI-ModelScope/databricks-dolly-15k",
        impl=P + "dolly",
        tags=("sft", "human", "en"),
        aliases=("dolly",),
    ),
    _hub(
        "lima",
        "1k carefully curated conversations (LIMA; gated: accept its terms on the Hub)",
        hf="GAIR/lima",
        impl=P + "lima",
        tags=("sft", "quality", "en"),
    ),
    _hub(
        "code-alpaca-20k",
        "20k code instructions in the Alpaca format",
        hf="sahil2801/CodeAlpaca-20k",
        ms="wyj123456/code_alpaca_en",
        format="alpaca",
        tags=("sft", "code", "en"),
        aliases=("codealpaca",),
    ),
    _hub(
        "metamathqa",
        "395k bootstrapped maths questions with worked answers",
        hf="meta-math/MetaMathQA",
        format="query_response",
        tags=("sft", "math", "en"),
    ),
    _hub(
        "mathinstruct",
        "260k maths instructions with chain-of-thought and program-of-thought answers",
        hf="TIGER-Lab/MathInstruct",
        ms="AI-ModelScope/MathInstruct",
        format="alpaca",
        tags=("sft", "math", "en"),
    ),
    _hub(
        "open-platypus",
        "25k STEM and logic questions gathered for the Platypus models",
        hf="garage-bAInd/Open-Platypus",
        ms="AI-ModelScope/Open-Platypus",
        format="alpaca",
        tags=("sft", "math", "en"),
    ),
    # ------------------------------------------------------------- preference pairs
    _hub(
        "hh-rlhf",
        "Anthropic's helpful and harmless human preference pairs",
        hf="Anthropic/hh-rlhf",
        ms="AI-ModelScope/hh-rlhf",
        format="preference",
        splits=("train", "test"),
        tags=("dpo", "preference", "en"),
    ),
    _hub(
        "ultrafeedback-binarized",
        "UltraFeedback pairs: the best-rated answer against a worse one (Zephyr's DPO data)",
        hf="HuggingFaceH4/ultrafeedback_binarized",
        format="preference",
        splits=("train_prefs", "test_prefs"),
        tags=("dpo", "preference", "en"),
        aliases=("ultrafeedback",),
    ),
    _hub(
        "orca-dpo-pairs",
        "Intel's Orca pairs: GPT-4 answers chosen over Llama-2-13B answers",
        hf="Intel/orca_dpo_pairs",
        ms="swift/orca_dpo_pairs",
        format="preference",
        tags=("dpo", "preference", "en"),
    ),
    _hub(
        "orpo-dpo-mix-40k",
        "a 40k mix of high-quality DPO pairs",
        hf="mlabonne/orpo-dpo-mix-40k",
        ms="AI-ModelScope/orpo-dpo-mix-40k",
        format="preference",
        tags=("dpo", "preference", "en"),
    ),
    _hub(
        "zhihu-rlhf-3k",
        "3k Zhihu answers ranked by votes (Chinese preference pairs)",
        hf="liyucheng/zhihu_rlhf_3k",
        ms="AI-ModelScope/zhihu_rlhf_3k",
        format="preference",
        tags=("dpo", "preference", "zh"),
    ),
    _hub(
        "stack-exchange-paired",
        "Stack Exchange answers paired by votes (huge)",
        hf="lvwerra/stack-exchange-paired",
        ms="AI-ModelScope/stack-exchange-paired",
        impl=P + "stack_exchange_paired",
        format="preference",
        tags=("dpo", "preference", "en", "huge"),
    ),
    # ------------------------------------------------------------- KTO
    _hub(
        "kto-mix-14k",
        "14k prompts with one completion each, labelled desirable or not (TRL's KTO example)",
        hf="trl-lib/kto-mix-14k",
        format="kto",
        splits=("train", "test"),
        tags=("kto", "en"),
    ),
    _hub(
        "ultrafeedback-kto",
        "UltraFeedback's cleaned pairs split into labelled single completions (ModelScope)",
        ms="AI-ModelScope/ultrafeedback-binarized-preferences-cleaned-kto",
        format="kto",
        tags=("kto", "en"),
    ),
    # ------------------------------------------------------------- evaluation
    _hub(
        "ceval",
        "C-Eval: 13k Chinese exam questions in 52 subjects (multiple choice)",
        hf="ceval/ceval-exam",
        ms="modelscope/ceval-exam",
        impl=P + "lettered",
        format="messages",
        subsets=tuple(CEVAL_SUBJECTS),
        splits=("val", "dev", "test"),
        tags=("eval", "mcq", "zh"),
        aliases=("ceval-exam", "c-eval"),
    ),
    _hub(
        "mmlu",
        "MMLU: 57 subjects of English multiple-choice questions",
        hf="cais/mmlu",
        ms="modelscope/mmlu",
        impl=P + "mmlu",
        format="messages",
        subsets=("all",),
        splits=("test", "validation", "dev"),
        tags=("eval", "mcq", "en"),
    ),
    _hub(
        "cmmlu",
        "CMMLU: 67 subjects of Chinese multiple-choice questions",
        hf="haonan-li/cmmlu",
        ms="modelscope/cmmlu",
        impl=P + "lettered",
        format="messages",
        subsets=tuple(CMMLU_SUBJECTS),
        splits=("test", "dev"),
        tags=("eval", "mcq", "zh"),
    ),
    _hub(
        "gsm8k",
        "GSM8K: 8.5k grade-school maths word problems with worked answers",
        hf="openai/gsm8k",
        ms="modelscope/gsm8k",
        impl=P + "gsm8k",
        format="messages",
        subsets=("main",),
        splits=("train", "test"),
        tags=("eval", "sft", "math", "en"),
    ),
    _hub(
        "arc",
        "AI2 Reasoning Challenge: grade-school science questions, Challenge and Easy sets",
        hf="allenai/ai2_arc",
        impl=P + "arc",
        format="messages",
        subsets=("ARC-Challenge", "ARC-Easy"),
        splits=("test", "validation", "train"),
        tags=("eval", "mcq", "en"),
        aliases=("ai2-arc",),
    ),
    _hub(
        "hellaswag",
        "HellaSwag: pick the most plausible continuation of an everyday scene",
        hf="Rowan/hellaswag",
        impl=P + "hellaswag",
        format="messages",
        splits=("validation", "train"),
        tags=("eval", "mcq", "en"),
    ),
    _hub(
        "truthfulqa-mc",
        "TruthfulQA (multiple choice, one true answer): questions that invite false beliefs",
        hf="truthfulqa/truthful_qa",
        impl=P + "truthfulqa_mc1",
        format="messages",
        subsets=("multiple_choice",),
        splits=("validation",),
        tags=("eval", "mcq", "en"),
        aliases=("truthfulqa",),
    ),
    _hub(
        "boolq",
        "BoolQ: yes/no questions about a Wikipedia passage",
        hf="google/boolq",
        impl=P + "boolq",
        format="messages",
        splits=("validation", "train"),
        tags=("eval", "mcq", "en"),
    ),
    _hub(
        "winogrande",
        "WinoGrande: fill the blank with the right one of two options (commonsense)",
        hf="allenai/winogrande",
        impl=P + "winogrande",
        format="messages",
        subsets=("winogrande_xl",),
        splits=("validation", "train"),
        tags=("eval", "mcq", "en"),
    ),
    _hub(
        "piqa",
        "PIQA: which of two solutions achieves a physical goal",
        hf="ybisk/piqa",
        impl=P + "piqa",
        format="messages",
        splits=("validation", "train"),
        tags=("eval", "mcq", "en"),
    ),
    # ------------------------------------------------------------- pretraining text
    _hub(
        "tinystories",
        "2M short stories in simple English, written by GPT-3.5 and GPT-4",
        hf="roneneldan/TinyStories",
        format="text",
        splits=("train", "validation"),
        tags=("pt", "en"),
    ),
    _hub(
        "wikitext-2",
        "WikiText-2 (raw): good and featured Wikipedia articles, one paragraph per row",
        hf="Salesforce/wikitext",
        impl=P + "drop_blank_text",
        format="text",
        subsets=("wikitext-2-raw-v1",),
        splits=("train", "validation", "test"),
        tags=("pt", "en"),
    ),
    _hub(
        "fineweb-edu",
        "FineWeb-Edu's 10B-token sample of educational web pages (huge: use --streaming)",
        hf="HuggingFaceFW/fineweb-edu",
        format="text",
        subsets=("sample-10BT",),
        tags=("pt", "en", "huge"),
    ),
)

E = "martlet_data:embedded/"

EMBEDDED_DATASETS: tuple[DatasetRecord, ...] = (
    DatasetRecord(
        name="self-cognition",
        summary="who the assistant is: 100+ identity questions (en, zh); needs --model-name "
        "and --model-author",
        path=E + "self_cognition.jsonl",
        impl=P + "self_cognition",
        format="messages",
        tags=("embedded", "sft", "en", "zh"),
    ),
    DatasetRecord(
        name="sample-sft",
        summary="instruction tuning sample: varied tasks with checked answers (embedded)",
        path=E + "sample_sft.jsonl",
        format="messages",
        tags=("embedded", "sft", "en", "zh"),
    ),
    DatasetRecord(
        name="sample-dpo",
        summary="preference sample: a correct, helpful answer over a wrong or unhelpful one "
        "(embedded)",
        path=E + "sample_dpo.jsonl",
        format="preference",
        tags=("embedded", "dpo", "preference", "en"),
    ),
    DatasetRecord(
        name="sample-kto",
        summary="KTO sample: single answers labelled desirable (true) or not (embedded)",
        path=E + "sample_kto.jsonl",
        format="kto",
        tags=("embedded", "kto", "en"),
    ),
    DatasetRecord(
        name="sample-mcq",
        summary="multiple-choice evaluation sample: question, choices A-D, answer letter "
        "(embedded)",
        path=E + "sample_mcq.jsonl",
        impl=P + "mcq",
        format="messages",
        tags=("embedded", "eval", "mcq", "en"),
    ),
    DatasetRecord(
        name="sample-arith",
        summary="arithmetic word problems in GSM8K's shape: worked answer, final number (embedded)",
        path=E + "sample_arith.jsonl",
        impl=P + "gsm8k",
        format="messages",
        tags=("embedded", "eval", "math", "en"),
    ),
    DatasetRecord(
        name="sample-rl",
        summary="online RL sample: arithmetic prompts asking for <think>/<answer> tags, the "
        "answer in `solution` (embedded; for --reward-funcs accuracy format)",
        path=E + "sample_rl.jsonl",
        format="messages",
        tags=("embedded", "rl", "grpo", "math", "en"),
    ),
    DatasetRecord(
        name="sample-pt",
        summary="raw text sample for pretraining: short factual paragraphs (embedded)",
        path=E + "sample_pt.jsonl",
        format="text",
        tags=("embedded", "pt", "en"),
    ),
)

DATASETS = HUB_DATASETS + EMBEDDED_DATASETS
