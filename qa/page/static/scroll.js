() => {
  // After an answer arrives, show its beginning (the question and the answer line) rather than its end;
  // qa/page/layout.py runs this after each question is shown and after each answer.
  const scroll = (tries) => {
    const rows = document.querySelectorAll('#qa-chat .message-row');
    const last = rows[rows.length - 1];
    const question = rows[rows.length - 2];
    // Wait (up to ~5 s) until the answer is rendered, or the scroll would stop short of the question.
    if (!question || (!last.querySelector('.qa-answer, .qa-error') && tries > 0)) return setTimeout(() => scroll(tries - 1), 100);
    let box = question.parentElement;
    while (box && box.scrollHeight <= box.clientHeight) box = box.parentElement;
    if (box) box.scrollTop += question.getBoundingClientRect().top - box.getBoundingClientRect().top - 8;
  };
  scroll(50);
}
