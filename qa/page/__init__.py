"""The chat page (`qa serve`): where it listens (server), its layout and events (layout, events), the
service behind it (chat, conversation), its HTML (render) with the sentences that answer (highlight), a
cited PDF page (pdf_view), the index panel and background rebuilds (index_status, background_rebuild), and
what it lets in (access)."""
